"""The fingerprint index and journal pruning on an object store: the same answers as a full scan, after a
kill mid-write too (a half-uploaded object is never committed)."""

from __future__ import annotations

import pytest

from nbpro_pipeline.storage import Storage, compact_ledger
from nbpro_pipeline.storage.history_index import index_dir, read_manifest
from nbpro_pipeline.storage.past import open_past
from tests.s3.conftest import keys
from tests.storage.test_history_index import CELL, RandomHistory, _kill_index_write_and_check, assert_same_answers
from tests.storage.test_journal_prune import kill_pruning_and_check

pytestmark = [pytest.mark.s3, pytest.mark.slow]


def test_the_index_on_s3_answers_as_a_full_scan_does_with_a_tail(bucket, s3_client):
    storage = Storage(f"s3://{bucket}/nbpro")
    history = RandomHistory(11)
    for i in range(4):
        history.run(storage, f"run-{i}", new=30, again=8)
    compact_ledger(storage, min_age_s=0)
    assert_same_answers(storage, history, indexed=True)
    history.run(storage, "run-4", new=10, again=10)
    assert_same_answers(Storage(f"s3://{bucket}/nbpro"), history, indexed=True)
    manifest = read_manifest(storage, *CELL)
    index_keys = keys(s3_client, bucket, "nbpro/index/provider=rivya/resolution=1K/")
    assert [k.rsplit("/", 1)[-1] for k in index_keys] == [manifest.file, "manifest.json"]
    s3_client.delete_object(Bucket=bucket, Key=f"{index_dir(storage, *CELL).split('/', 1)[1]}/{manifest.file}")
    past = open_past(Storage(f"s3://{bucket}/nbpro"), *CELL)  # the manifest still names the deleted file
    assert set(past.facts(history.probe())) == set(history.probe())
    assert past.reader is None  # the lookup fell back to reading the cell
    assert_same_answers(Storage(f"s3://{bucket}/nbpro"), history)


@pytest.mark.external
@pytest.mark.parametrize("point", ["mid_file", "before_manifest"])
def test_a_kill_mid_index_write_on_s3_neither_loses_nor_doubles_an_answer(bucket, point):
    root = f"s3://{bucket}/nbpro"
    _kill_index_write_and_check(Storage(root), root, point)


@pytest.mark.external
@pytest.mark.parametrize("point", ["mid_write", "after_commit", "mid_delete"])
async def test_a_kill_mid_journal_pruning_on_s3_keeps_every_needed_entry_once(bucket, point):
    await kill_pruning_and_check(f"s3://{bucket}/nbpro", point)
