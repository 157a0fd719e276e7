"""A long-lived process (a code server, a sensor, a notebook) keeps one filesystem per bucket: what other
processes write meanwhile must show up in its listings and existence checks, never a cached past."""

from __future__ import annotations

import pytest

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, read_journal, read_ledger, read_table, write_table
from tests.s3.conftest import keys

pytestmark = pytest.mark.s3


def test_objects_written_by_another_process_are_seen_at_once(bucket, s3_client):
    import pyarrow as pa

    here = Storage(f"s3://{bucket}/nbpro")
    elsewhere = Storage(f"s3://{bucket}/nbpro", {"skip_instance_cache": True})  # stands for another process
    write_table(here, "prompt_table/rejected", pa.table({"x": [1]}))
    assert here.find(here.tables_dir()) and not here.exists(here.path("tables", "prompt_table", "accepted.parquet"))
    assert read_ledger(here).num_rows == 0 and read_journal(here, Provider.RIVYA, Resolution.R1K).segments == 0

    write_table(elsewhere, "prompt_table/accepted", pa.table({"x": [1, 2]}))
    elsewhere.write_bytes(elsewhere.path("journal", "provider=rivya", "resolution=1K", "r1", "seg-1.jsonl"), b"\n")
    assert read_table(here, "prompt_table/accepted").num_rows == 2
    assert read_journal(here, Provider.RIVYA, Resolution.R1K).segments == 1
    assert len(keys(s3_client, bucket)) == 3
