"""Helpers for the prompt-table tests: write small tables into a temp dir and load them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nbpro_pipeline.prompts import PromptTableResult, load_prompt_tables


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """``write("a.csv", "prompt\\nx\\n")`` -> the file's path under ``tmp_path`` (folders created)."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        return path

    return _write


@pytest.fixture
def load() -> Callable[..., PromptTableResult]:
    def _load(*sources: str | Path, **kwargs) -> PromptTableResult:
        return load_prompt_tables([str(s) for s in sources], **kwargs)

    return _load
