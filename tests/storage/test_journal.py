"""The write-ahead journal: durable after sync, group commit, rebuilt state, and unresolved tasks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Journal, Storage, read_journal
from nbpro_pipeline.storage.journal import JournalEntry, JournalState

R, K = Provider.RIVYA, Resolution.R1K


def fresh_view(storage: Storage) -> Storage:
    """A second Storage on the same root, as a later process would open it."""
    return storage if not storage.is_local else Storage(storage.root)


async def test_entries_are_durable_after_sync(any_storage):
    journal = Journal(any_storage, R, K, "run-1")
    journal.add("intent", "fp1", idempotency_key="key1", row={"prompt_id": "p1"}, request={"prompt": "x"})
    journal.add("task", "fp1", task_id="gen_1", idempotency_key="key1")
    assert read_journal(any_storage, R, K).segments == 0  # nothing on storage before sync
    await journal.sync()
    state = read_journal(fresh_view(any_storage), R, K)
    assert state.segments == 1 and state.bad_lines == 0
    intent = state.intents["fp1"]
    assert intent.idempotency_key == "key1" and intent.row == {"prompt_id": "p1"} and intent.run_id == "run-1"
    assert [e.task_id for e in state.tasks["fp1"]] == ["gen_1"]
    # other cells see nothing
    assert read_journal(any_storage, Provider.ODIROUTER, K).segments == 0
    assert read_journal(any_storage, R, Resolution.R2K).tasks == {}


async def test_sync_with_nothing_pending_writes_no_segment(any_storage):
    journal = Journal(any_storage, R, K, "run-1")
    await journal.sync()
    assert journal.segments == 0 and read_journal(any_storage, R, K).segments == 0


async def test_sync_upto_returns_once_that_entry_is_durable(local_storage):
    journal = Journal(local_storage, R, K, "run-1")
    first = journal.add("intent", "a")
    await journal.sync(upto=first)
    assert len(read_journal(local_storage, R, K).intents) == 1


@pytest.mark.parametrize("n", [50])
async def test_concurrent_syncs_share_flushes(any_storage, n):
    journal = Journal(any_storage, R, K, "run-1")

    async def submit(i: int) -> None:
        journal.add("intent", f"fp{i}", idempotency_key=f"k{i}")
        await journal.sync()
        journal.add("task", f"fp{i}", task_id=f"t{i}", idempotency_key=f"k{i}")
        await journal.sync()

    await asyncio.gather(*(submit(i) for i in range(n)))
    state = read_journal(any_storage, R, K)
    assert len(state.intents) == n and sum(len(v) for v in state.tasks.values()) == n
    assert journal.segments == state.segments
    assert journal.segments <= 4 < 2 * n  # group commit: a burst of submits costs a few segments, not 2n


async def test_read_journal_rebuilds_intents_tasks_and_unknowns_across_runs(local_storage):
    first = Journal(local_storage, R, K, "run-a")
    first.add("intent", "fp1", idempotency_key="k1")
    first.add("task", "fp1", task_id="t1")
    first.add("intent", "fp2", idempotency_key="k2")
    first.add("unknown", "fp2")
    await first.sync()
    second = Journal(local_storage, R, K, "run-b")
    second.add("intent", "fp1", idempotency_key="k1-retry")
    second.add("task", "fp1", task_id="t2")
    second.add("unknown", "fp2")
    await second.sync()
    state = read_journal(local_storage, R, K)
    assert state.segments == 2
    assert state.intents["fp1"].idempotency_key == "k1-retry" and state.intents["fp1"].run_id == "run-b"
    assert [e.task_id for e in state.tasks["fp1"]] == ["t1", "t2"]  # in time order
    assert state.unknown == {"fp2": 2}
    assert "fp2" not in state.tasks


def test_unresolved_tasks_excludes_resolved_ids():
    t0 = datetime(2025, 1, 1, tzinfo=UTC)

    def task(fp, tid, s):
        return JournalEntry(kind="task", fingerprint=fp, run_id="r", at=t0 + timedelta(seconds=s), task_id=tid)

    state = JournalState(
        tasks={
            "a": [task("a", "a1", 0)],
            "b": [task("b", "b1", 0), task("b", "b2", 1)],
            "c": [task("c", "c1", 0), task("c", "c2", 1)],
            "d": [task("d", "d1", 0)],
        }
    )
    assert {fp: e.task_id for fp, e in state.unresolved_tasks([]).items()} == {
        "a": "a1",
        "b": "b2",
        "c": "c2",
        "d": "d1",
    }
    out = state.unresolved_tasks(iter(["a1", "b2", "c1", "c2"]))
    assert {fp: e.task_id for fp, e in out.items()} == {"b": "b1", "d": "d1"}


async def test_unreadable_lines_are_skipped_not_fatal(local_storage):
    journal = Journal(local_storage, R, K, "run-1")
    journal.add("task", "fp1", task_id="t1")
    await journal.sync()
    seg = local_storage.find(local_storage.journal_dir(R, K))[0]
    with open(seg, "ab") as fh:
        fh.write(b'{"kind": "task", "fingerprint": "fp2"\n\nnot json at all\n{"kind":"bogus"}\n')
    state = read_journal(local_storage, R, K)
    assert state.bad_lines == 3 and list(state.tasks) == ["fp1"]


async def test_run_ids_become_safe_directory_names(local_storage):
    journal = Journal(local_storage, R, K, "../../../outside")
    journal.add("intent", "fp")
    await journal.sync()
    seg = local_storage.find(local_storage.journal_dir(R, K))
    assert len(seg) == 1 and seg[0].startswith(local_storage.journal_dir(R, K) + "/")
    assert read_journal(local_storage, R, K).intents["fp"].run_id == "../../../outside"


def test_flush_now_outside_an_event_loop(local_storage):
    journal = Journal(local_storage, R, K, "run-1")
    journal.add("task", "fp", task_id="t")
    journal.flush_now()
    assert read_journal(local_storage, R, K).tasks["fp"][0].task_id == "t"


async def test_a_failed_flush_keeps_its_entries_for_the_next_sync(local_storage, monkeypatch):
    journal = Journal(local_storage, R, K, "run-1")
    journal.add("task", "fp1", task_id="t1")
    real = local_storage.write_bytes
    calls = {"n": 0}

    def flaky(path, data):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("storage hiccup")
        real(path, data)

    monkeypatch.setattr(local_storage, "write_bytes", flaky)
    with pytest.raises(OSError, match="hiccup"):
        await journal.sync()
    journal.add("task", "fp2", task_id="t2")
    await asyncio.wait_for(journal.sync(), timeout=5)
    state = read_journal(local_storage, R, K)
    assert {fp: [e.task_id for e in v] for fp, v in state.tasks.items()} == {"fp1": ["t1"], "fp2": ["t2"]}


async def test_two_journals_with_the_same_run_id_do_not_overwrite_each_other(local_storage):
    """A cell run again under the same run id (an in-process retry) must not erase the first attempt's
    journaled task ids: they are what prevents paying twice after a crash."""
    first = Journal(local_storage, R, K, "run-1")
    first.add("task", "fp1", task_id="t1")
    await first.sync()
    second = Journal(local_storage, R, K, "run-1")
    second.add("task", "fp2", task_id="t2")
    await second.sync()
    state = read_journal(local_storage, R, K)
    assert set(state.tasks) == {"fp1", "fp2"}
