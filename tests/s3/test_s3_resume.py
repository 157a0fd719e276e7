"""A cell on S3 killed with SIGKILL mid-run, then run again: nothing is bought twice and every row is
accounted. The kill is real (a separate process, no cleanup of any kind), so whatever the killed run
left in the bucket is what the next run has to trust."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, compact_ledger, read_journal
from tests.engine.conftest import R1K, Harness, fingerprint, prompt_rows, sandbox_amounts
from tests.s3.cell_child import LEASE_TTL_S
from tests.s3.conftest import keys

pytestmark = [pytest.mark.s3, pytest.mark.external, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ROWS = 24  # 6 rounds of 4 at 0.5 s: the kill lands well before the end, even on a loaded machine
SLOW = {"latency": {"processing": {"dist": "fixed", "value": 0.5}}}
FAST = {"latency": {"processing": {"dist": "fixed", "value": 0}}}


def _wait_for(predicate, proc: subprocess.Popen, limit_s: float = 30.0) -> None:
    """Until ``predicate()`` holds; a safety limit only (the test fails on it, it measures nothing)."""
    end = time.monotonic() + limit_s
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the cell process exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > end:
            raise AssertionError("the cell never wrote a ledger part")
        time.sleep(0.02)


@pytest.mark.parametrize("compact_between", [False, True], ids=["as-left", "compacted-and-pruned"])
def test_a_killed_cell_on_s3_resumes_without_paying_twice(sandbox, bucket, s3_client, rivya_key, compact_between):
    """``compacted-and-pruned``: a compaction (index written, journal pruned) runs between the kill and the
    next run; what it kept of the journal must be all that run needs."""
    root = f"s3://{bucket}/nbpro"
    sandbox.set_config({"rivya": SLOW})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.s3.cell_child", "--url", sandbox.rivya_url, "--key", rivya_key]
        + ["--root", root, "--run-id", "run-killed", "--rows", str(ROWS)],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: keys(s3_client, bucket, "nbpro/ledger/"), proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # what the killed run left: only whole objects (a part or segment is one PUT, never half of one)
    left = keys(s3_client, bucket, "nbpro/")
    recorded: list[str] = []
    for key in left:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if key.endswith(".parquet"):
            recorded += pq.read_table(io.BytesIO(body))["fingerprint"].to_pylist()
        elif key.endswith(".jsonl"):
            assert all(json.loads(line) for line in body.decode().splitlines())
    recorded_before = len(recorded)
    created_before = sandbox.stats()["rivya"]["tasks_created"]
    assert 0 < recorded_before < created_before, "the kill must land mid-run, with paid tasks not yet recorded"
    print(f"killed with {recorded_before} rows recorded, {created_before} tasks created")

    if compact_between:
        _compact_keeping_what_is_unfinished(Storage(root), s3_client, bucket, set(recorded))
    sandbox.set_config({"rivya": FAST})
    harness = Harness(sandbox=sandbox, storage=Storage(root), keys={Provider.RIVYA: rivya_key})
    rows = prompt_rows(ROWS)
    time.sleep(LEASE_TTL_S)  # the killed run's lease expires (renewed at most at the kill)
    settings = EngineSettings(
        max_in_flight=24, progress_interval_s=60, ledger_flush_interval_s=60, lease_clock_skew_s=0
    )
    report = asyncio.run(harness.run(Provider.RIVYA, rows, run_id="run-after-kill", settings=settings))
    print(f"after the kill: resumed {report.resumed}, submitted {report.submitted}")

    assert report.already_done == recorded_before
    assert report.already_done + report.succeeded == ROWS and report.failed == report.skipped == 0
    assert report.resumed + report.submitted == ROWS - recorded_before
    # every prompt was created once on Rivya: journaled tasks were polled, journaled intents replayed
    assert sandbox.stats()["rivya"]["tasks_created"] == ROWS
    billed = sandbox_amounts(sandbox, Provider.RIVYA)
    assert len(billed) == ROWS and set(billed.values()) == {Decimal(8)}
    ledger = harness.rows(Provider.RIVYA)
    assert sorted(r["fingerprint"] for r in ledger) == sorted(fingerprint(r, Provider.RIVYA) for r in rows)
    assert all(r["status"] == "succeeded" for r in ledger)
    harness.assert_reconciles(Provider.RIVYA)
    if compact_between:  # the run pruned what it finished: nothing left to resume
        assert read_journal(Storage(root), Provider.RIVYA, R1K).tasks == {}


def _compact_keeping_what_is_unfinished(storage: Storage, s3_client, bucket: str, recorded: set[str]) -> None:
    """Compaction prunes the journal to one file that still holds, for every fingerprint the ledger lacks,
    its latest intent and its task entries. (Whether the kill left task entries or only intents depends
    on timing: Rivya's task ids ride on the next flush, its intents are durable before each submit.)"""

    def unfinished(state) -> tuple[dict, dict]:
        intents = {fp: e.model_dump() for fp, e in state.intents.items() if fp not in recorded}
        tasks = {fp: [e.model_dump() for e in es] for fp, es in state.tasks.items() if fp not in recorded}
        return intents, tasks

    before = unfinished(read_journal(storage, Provider.RIVYA, R1K))
    assert before[0], "the kill must leave unfinished work in the journal"
    compact_ledger(storage, min_age_s=0)
    assert not [k for k in keys(s3_client, bucket, "nbpro/journal/") if k.endswith(".jsonl")]
    assert unfinished(read_journal(storage, Provider.RIVYA, R1K)) == before
