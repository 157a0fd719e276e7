"""Named Parquet tables under ``tables/``."""

from __future__ import annotations

import pyarrow as pa
import pytest

from nbpro_pipeline.storage import read_table, table_path, write_table


def test_write_then_read_round_trip(any_storage):
    table = pa.table({"a": [1, 2, 3], "b": ["x", None, "z"]})
    uri = write_table(any_storage, "prompts/accepted", table)
    assert uri == any_storage.uri(table_path(any_storage, "prompts/accepted"))
    assert read_table(any_storage, "prompts/accepted").equals(table)
    assert table_path(any_storage, "prompts/accepted").endswith("/tables/prompts/accepted.parquet")


def test_missing_table_says_so(any_storage):
    with pytest.raises(FileNotFoundError, match="does not exist yet"):
        read_table(any_storage, "nope")


def test_table_names_cannot_leave_the_root(local_storage):
    with pytest.raises(ValueError):
        write_table(local_storage, "../escape", pa.table({"a": [1]}))
