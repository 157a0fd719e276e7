"""A prompt row's own say over its prompt: the table's ``share_prompt`` and ``prompt_writer`` columns,
whatever the table format made of them (CSV text, Parquet booleans or numbers)."""

from __future__ import annotations

import json

import pytest

from nbpro_pipeline.models.prompt import MAX_PROMPT_WRITER, PromptRow


def row(**extra) -> PromptRow:
    return PromptRow(
        prompt_id="p", prompt="x", prompt_sha256="0" * 64, source_uri="file:///t.csv", source_sha256="0" * 64,
        row_number=1, extra=json.dumps(extra),
    )  # fmt: skip


@pytest.mark.parametrize("value", ["yes", "TRUE", " y ", "1", True, 1])
def test_a_clear_yes_shares_the_prompt(value):
    assert row(share_prompt=value).shares_prompt


@pytest.mark.parametrize("value", ["no", "", "false", "0", "maybe", False, 0, None, ["yes"]])
def test_anything_else_keeps_it_private(value):
    assert not row(share_prompt=value).shares_prompt
    assert not row().shares_prompt  # no such column


def test_the_prompt_writer_is_one_bounded_line():
    assert row(prompt_writer="  Ana\n  Example\t").prompt_writer == "Ana Example"
    assert row(prompt_writer="x" * 1000).prompt_writer == "x" * MAX_PROMPT_WRITER
    assert row(prompt_writer="  ").prompt_writer is None and row().prompt_writer is None
