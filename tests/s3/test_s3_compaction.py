"""Ledger compaction on an object store: a kill at any point, then a second compaction, keeps every row once."""

from __future__ import annotations

import pytest

from nbpro_pipeline.storage import Storage
from tests.s3.conftest import keys
from tests.storage.test_compaction import _kill_and_check

pytestmark = [pytest.mark.s3, pytest.mark.external]


@pytest.mark.parametrize("point", ["mid_write", "after_commit", "mid_delete"])
def test_a_kill_mid_compaction_on_s3_neither_loses_nor_duplicates_a_row(bucket, s3_client, point):
    root = f"s3://{bucket}/nbpro"
    _kill_and_check(Storage(root), root, point)
    ledger = [k for k in keys(s3_client, bucket, "nbpro/ledger/") if k.endswith(".parquet")]
    assert len(ledger) == 1 and "/part-compact-" in ledger[0]
