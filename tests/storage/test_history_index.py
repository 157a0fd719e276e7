"""The fingerprint index answers exactly what a full scan of the cell answers, whatever state it is in."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import LedgerWriter, Storage, compact_ledger, history_index
from nbpro_pipeline.storage.history_index import (
    MANIFEST,
    bucket_of,
    buckets_for,
    index_dir,
    read_manifest,
    write_index,
)
from nbpro_pipeline.storage.past import open_past
from tests.storage.conftest import T0, ledger_record
from tests.storage.oracles import full_cell_scan
from tests.storage.test_compaction import REPO

pytestmark = pytest.mark.slow  # cells of thousands of rows, and a writer killed mid-index
CELL = (Provider.RIVYA, Resolution.R1K)
RESUMABLE = ["deadline_exceeded", "result_unreadable", "poll_failed"]
TERMINAL = ["content_policy", "invalid_request"]


class RandomHistory:
    """Fingerprints with every shape a run meets: resumed and re-polled tasks, failures then a success,
    unreadable results, skipped rows without a task, a success whose image URI is missing."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = 0
        self.task_seq = 0
        self.fingerprints: list[str] = []

    def _at(self):
        self.clock += 1
        return T0 + timedelta(seconds=self.clock)

    def rows_for(self, fp: str, run_id: str) -> list:
        rng, rows = self.rng, []
        for _attempt in range(rng.choice([1, 1, 1, 2, 3])):
            self.task_seq += 1
            task = None if rng.random() < 0.1 else f"task-{self.task_seq}"
            for _row in range(rng.choice([1, 1, 2, 3])):  # a task booked again: resumed, re-polled, replayed
                status = rng.choice(["succeeded", "failed", "failed", "skipped"]) if task else "skipped"
                code = None
                if status == "failed":
                    code = rng.choice(RESUMABLE + TERMINAL)
                elif status == "skipped":
                    code = "budget_exceeded"
                image = f"/images/{fp}-{self.clock}.png" if status == "succeeded" and rng.random() < 0.9 else None
                cost = Decimal(rng.choice([0, 8, 8, 12])) / (1 if rng.random() < 0.8 else 4)
                rows.append(
                    ledger_record(
                        f"p-{fp}",
                        fingerprint=fp,
                        task_id=task,
                        status=status,
                        error_code=code,
                        cost=cost if status != "skipped" else 0,
                        image_uri=image,
                        run_id=run_id,
                        recorded_at=self._at(),
                    )
                )
        return rows

    def run(self, storage: Storage, run_id: str, new: int, again: int, flush_rows: int = 7) -> None:
        """One run: ``new`` fingerprints never seen and ``again`` earlier ones booked again."""
        writer = LedgerWriter(storage, *CELL, run_id, flush_rows=flush_rows, flush_interval_s=3600)
        fresh = [f"fp-{run_id}-{i}" for i in range(new)]
        older = self.rng.sample(self.fingerprints, min(again, len(self.fingerprints)))
        self.fingerprints += fresh
        for fp in fresh + older:
            for record in self.rows_for(fp, run_id):
                writer.add(record)
        writer.flush()

    def probe(self) -> list[str]:
        return [*self.fingerprints, "fp-never-seen"]


def full_scan_facts(storage: Storage, fps: list[str]) -> dict:
    """The answers of the whole-cell scan (``tests.storage.oracles``), in the shape the index gives them."""
    history = full_cell_scan(storage, *CELL)
    images = history.succeeded_images(fps)
    failed = history.failed_tasks(fps)
    task_ids_of: dict[str, set] = {}
    for row in history.table.select(["fingerprint", "task_id"]).to_pylist():
        if row["task_id"]:
            task_ids_of.setdefault(row["fingerprint"], set()).add(row["task_id"])
    # one scan of every task: a task's answer reads only its own rows, so it is the same asked alone
    tasks = history.tasks()
    out = {}
    for fp in fps:
        task_ids = task_ids_of.get(fp, set())
        out[fp] = (
            images.get(fp),
            {t: (h.charged, h.latest_error_code, h.failed) for t, h in tasks.items() if t in task_ids},
            failed.get(fp, set()),
        )
    return out


def index_facts(storage: Storage, fps: list[str], **kw) -> dict:
    past = open_past(storage, *CELL, **kw)
    return {
        fp: (
            f.image_uri,
            {t: (h.charged, h.latest_error_code, h.latest_status == "failed") for t, h in f.tasks.items()},
            f.failed_tasks,
        )
        for fp, f in past.facts(fps).items()
    }


def assert_same_answers(storage: Storage, history: RandomHistory, *, indexed: bool | None = None) -> None:
    fps = history.probe()
    past = open_past(storage, *CELL)
    if indexed is not None:
        assert (past.reader is not None) is indexed, past.why_no_index
    assert index_facts(storage, fps) == full_scan_facts(storage, fps)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_index_and_its_tail_answer_as_a_full_scan_does(any_storage, seed):
    history = RandomHistory(seed)
    for i in range(6):
        history.run(any_storage, f"run-{i}", new=40, again=10)
    assert_same_answers(any_storage, history, indexed=False)  # no index yet: the cell is read
    compact_ledger(any_storage, min_age_s=0)
    assert_same_answers(any_storage, history, indexed=True)
    assert open_past(any_storage, *CELL).tail_parts == 0
    for i in range(6, 9):  # newer runs: the tail the index does not cover
        history.run(any_storage, f"run-{i}", new=15, again=20)
    past = open_past(any_storage, *CELL)
    assert past.reader is not None and past.tail_parts > 0
    assert_same_answers(any_storage, history, indexed=True)


def test_a_one_pass_walk_answers_the_same_and_holds_only_the_buckets_it_is_at(any_storage, monkeypatch):
    """Journal pruning asks in bucket order, a batch at a time: the buckets are read (never mapped) and
    those of earlier batches let go, with the same answers as a full scan."""
    monkeypatch.setattr(history_index, "TARGET_BUCKET_ROWS", 16)
    history = RandomHistory(7)
    for i in range(4):
        history.run(any_storage, f"run-{i}", new=40, again=10)
    compact_ledger(any_storage, min_age_s=0)
    history.run(any_storage, "run-4", new=10, again=10)  # and a tail
    past = open_past(any_storage, *CELL, one_pass=True)
    assert past.reader is not None and past.reader._mapped is None and past.tail_parts > 0
    buckets = past.reader.manifest.buckets
    assert buckets >= 8
    fps = sorted(history.probe(), key=lambda fp: (bucket_of(fp, buckets), fp))
    expected = full_scan_facts(any_storage, fps)
    for lo in range(0, len(fps), 25):
        batch = fps[lo : lo + 25]
        facts = past.facts(batch)
        assert set(past._buckets) == {bucket_of(fp, buckets) for fp in batch}
        assert {fp: f.image_uri for fp, f in facts.items()} == {fp: expected[fp][0] for fp in batch}
        assert {fp: f.failed_tasks for fp, f in facts.items()} == {fp: expected[fp][2] for fp in batch}


def test_a_compaction_that_did_not_rewrite_the_index_makes_it_stale_and_the_cell_is_read(local_storage):
    history = RandomHistory(4)
    for i in range(4):
        history.run(local_storage, f"run-{i}", new=30, again=5)
    compact_ledger(local_storage, min_age_s=0)
    history.run(local_storage, "run-4", new=10, again=10)
    compact_ledger(local_storage, min_age_s=0, index=False)  # covered parts merged away, index left as it was
    past = open_past(local_storage, *CELL)
    assert past.reader is None and "stale" in (past.why_no_index or "")
    assert_same_answers(local_storage, history)


def test_a_damaged_manifest_or_a_missing_bucket_file_falls_back_to_the_cell(local_storage):
    history = RandomHistory(5)
    for i in range(3):
        history.run(local_storage, f"run-{i}", new=30, again=5)
    compact_ledger(local_storage, min_age_s=0)
    past = open_past(local_storage, *CELL)  # a run that read the manifest before the file went away
    manifest = read_manifest(local_storage, *CELL)
    directory = index_dir(local_storage, *CELL)
    local_storage.fs.rm_file(f"{directory}/{manifest.file}")
    assert index_facts(local_storage, history.probe()) == full_scan_facts(local_storage, history.probe())
    fps = history.probe()
    assert {fp: f.image_uri for fp, f in past.facts(fps).items()} == {  # the mapped file is still readable
        fp: v[0] for fp, v in full_scan_facts(local_storage, fps).items()
    }
    local_storage.write_bytes(f"{directory}/{MANIFEST}", b'{"format": 1, "file": ')
    assert open_past(local_storage, *CELL).reader is None
    assert_same_answers(local_storage, history)


def test_a_bucket_whose_bytes_do_not_match_the_manifest_is_not_trusted(memory_storage):
    history = RandomHistory(6)
    for i in range(3):
        history.run(memory_storage, f"run-{i}", new=30, again=5)
    compact_ledger(memory_storage, min_age_s=0)
    manifest = read_manifest(memory_storage, *CELL)
    path = f"{index_dir(memory_storage, *CELL)}/{manifest.file}"
    data = bytearray(memory_storage.read_bytes(path))
    data[manifest.offsets[0] + 8 : manifest.offsets[0] + 64] = b"\xff" * 56
    memory_storage.fs.pipe_file(path, bytes(data))
    assert index_facts(memory_storage, history.probe()) == full_scan_facts(memory_storage, history.probe())


def test_buckets_grow_with_the_cell_and_spread_synthetic_fingerprints():
    from nbpro_pipeline.storage.history_index import bucket_ids

    assert buckets_for(0) == 1 and buckets_for(1024) == 1 and buckets_for(1025) == 2 and buckets_for(166_000) == 256
    import pyarrow as pa
    import pyarrow.compute as pc

    fps = pa.array([f"r1K{i:059x}" for i in range(20_000)])  # the bench's sequential, non-random ones
    counts = pc.value_counts(bucket_ids(fps, 64)).field("counts").to_pylist()
    assert len(counts) == 64 and max(counts) < 2 * 20_000 / 64


def test_the_index_beside_a_concurrent_writer_keeps_every_answer(local_storage):
    history = RandomHistory(7)
    for i in range(3):
        history.run(local_storage, f"run-{i}", new=20, again=5)
    done = threading.Event()

    def writer() -> None:
        for i in range(3, 12):
            history.run(local_storage, f"run-{i}", new=8, again=4, flush_rows=3)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    rounds = 0
    while not done.is_set() or rounds < 2:
        compact_ledger(local_storage, min_age_s=0)
        rounds += 1
    thread.join()
    assert_same_answers(local_storage, history)
    compact_ledger(local_storage, min_age_s=0)
    assert_same_answers(local_storage, history, indexed=True)


def _kill_index_write_and_check(storage: Storage, root: str, point: str) -> None:
    history = RandomHistory(8)
    for i in range(3):
        history.run(storage, f"run-{i}", new=400, again=10, flush_rows=250)
    compact_ledger(storage, min_age_s=0)  # an index exists; the killed write would replace it
    history.run(storage, "run-3", new=50, again=20)
    child = subprocess.run(
        [sys.executable, "-m", "tests.storage.index_child", root, point], cwd=REPO, capture_output=True, timeout=120
    )
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    assert_same_answers(storage, history)  # right after the kill: the old index and its tail, or the cell
    write_index(storage, *CELL)
    assert_same_answers(storage, history, indexed=True)
    assert open_past(storage, *CELL).tail_parts == 0


@pytest.mark.external
@pytest.mark.parametrize("point", ["mid_file", "before_manifest"])
def test_a_kill_mid_index_write_neither_loses_nor_doubles_an_answer(tmp_path, point):
    root = str(tmp_path / "root")
    _kill_index_write_and_check(Storage(root), root, point)
