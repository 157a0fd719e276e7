"""Journal pruning keeps every entry a later run needs, drops the rest, and survives a kill at any point."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Journal, LedgerWriter, Storage, read_journal
from nbpro_pipeline.storage.journal import JournalEntry, list_journal
from nbpro_pipeline.storage.journal_prune import JournalRules, needed, prune_journal
from nbpro_pipeline.storage.past import FingerprintFacts, TaskFacts, open_past
from tests.storage.conftest import T0, ledger_record
from tests.storage.test_compaction import REPO

R, K = Provider.RIVYA, Resolution.R1K
RULES = JournalRules(frozenset({"deadline_exceeded", "result_unreadable"}), lambda fp: f"key-{fp}")


def entry(kind: str, fp: str, at: int, **kw) -> JournalEntry:
    return JournalEntry(kind=kind, fingerprint=fp, run_id="run-1", at=T0 + timedelta(seconds=at), **kw)


def intent(fp: str, at: int, key: str | None = None) -> JournalEntry:
    return entry("intent", fp, at, idempotency_key=key or f"key-{fp}", row={"prompt_id": fp}, request={"p": fp})


def facts(*tasks: tuple[str, str | None, str], last: int | None = None, failed=()) -> FingerprintFacts:
    return FingerprintFacts(
        tasks={t: TaskFacts(charged=0, latest_error_code=code, latest_status=status) for t, code, status in tasks},
        failed_tasks=set(failed),
        last_recorded_at=None if last is None else T0 + timedelta(seconds=last),
    )


def test_a_task_with_a_final_row_goes_with_its_intent():
    es = [intent("a", 1), entry("task", "a", 2, task_id="t1")]
    assert needed(es, facts(("t1", None, "succeeded"), last=3), RULES) == []


def test_a_task_without_a_row_stays_with_the_latest_intent():
    old, new = intent("a", 1), intent("a", 5)
    es = [old, entry("task", "a", 2, task_id="t1"), new, entry("task", "a", 6, task_id="t2")]
    kept = needed(es, facts(("t1", "content_policy", "failed"), last=3, failed=["t1"]), RULES)
    assert [e.task_id for e in kept if e.kind == "task"] == ["t2"] and new in kept and old not in kept


def test_a_task_whose_latest_row_is_resumable_stays():
    es = [intent("a", 1), entry("task", "a", 2, task_id="t1")]
    kept = needed(es, facts(("t1", "result_unreadable", "failed"), last=3, failed=["t1"]), RULES)
    assert {e.kind for e in kept} == {"intent", "task"}


def test_an_intent_with_no_row_after_it_stays_and_so_do_its_unknown_submits():
    es = [intent("a", 5), entry("unknown", "a", 6)]
    assert needed(es, facts(last=3), RULES) == es  # a row from before the intent is not its outcome
    assert needed(es, facts(), RULES) == es
    assert needed(es, facts(last=7), RULES) == []


def test_an_intent_whose_key_a_first_attempt_would_reuse_stays_unless_the_engine_derives_it_anyway():
    legacy = intent("a", 1, key="an-older-versions-key")
    assert needed([legacy], facts(last=3), RULES) == [legacy]  # generation 0: key_for would reuse it
    assert needed([legacy], facts(("t1", "content_policy", "failed"), last=3, failed=["t1"]), RULES) == []
    assert needed([intent("a", 1)], facts(last=3), RULES) == []  # the namespaced key: derived again


async def _journal(storage: Storage, run_id: str, entries: list[tuple[str, str, str | None]]) -> None:
    journal = Journal(storage, R, K, run_id)
    for kind, fp, task in entries:
        if kind == "intent":
            journal.add("intent", fp, idempotency_key=f"key-{fp}", row={"prompt_id": fp}, request={"p": fp})
        else:
            journal.add(kind, fp, task_id=task)
        await journal.sync()  # one segment per entry: many files to merge


def _book(storage: Storage, run_id: str, rows: list[tuple[str, str, str, str | None]]) -> None:
    writer = LedgerWriter(storage, R, K, run_id)
    for fp, task, status, code in rows:
        at = datetime.now(UTC)  # after the journal entries, as a row booked for them is
        writer.add(
            ledger_record(
                fp, fingerprint=fp, task_id=task, status=status, error_code=code, run_id=run_id, recorded_at=at
            )
        )
    writer.flush()


async def _history(storage: Storage) -> None:
    """fa and fb booked; fc's task in flight (no row); fd's task unreadable (resumable); fe never answered."""
    await _journal(
        storage,
        "run-1",
        [
            ("intent", "fa", None),
            ("task", "fa", "ta"),
            ("intent", "fb", None),
            ("task", "fb", "tb"),
            ("intent", "fc", None),
            ("task", "fc", "tc"),
            ("intent", "fd", None),
            ("task", "fd", "td"),
            ("intent", "fe", None),
        ],
    )
    _book(
        storage,
        "run-1",
        [
            ("fa", "ta", "succeeded", None),
            ("fb", "tb", "failed", "content_policy"),
            ("fd", "td", "failed", "result_unreadable"),
        ],
    )


def _needed_view(storage: Storage) -> tuple:
    """What a run takes from the journal: the unresolved tasks and the intents they are finished with."""
    state = read_journal(storage, R, K)
    past = open_past(storage, R, K)
    f = past.facts(state.tasks)
    resolved = {
        t for fp in state.tasks for t, h in f[fp].tasks.items() if h.latest_error_code not in RULES.resumable_codes
    }
    unresolved = state.unresolved_tasks(resolved)
    return {fp: e.task_id for fp, e in unresolved.items()}, {fp: state.intents[fp].row for fp in unresolved}


async def test_pruning_merges_the_segments_into_one_file_of_what_is_still_needed(any_storage):
    await _history(any_storage)
    before = _needed_view(any_storage)
    assert before[0] == {"fc": "tc", "fd": "td"}
    pruned = prune_journal(any_storage, R, K, RULES)
    assert pruned.entries_before == 9 and pruned.written
    files = list_journal(any_storage, R, K)
    assert files.segments == [] and list(files.compacted) == [pruned.written] and files.leftovers == []
    assert _needed_view(any_storage) == before
    kept = {(e.kind, e.fingerprint) for e in read_journal(any_storage, R, K).intents.values()}
    assert kept == {("intent", "fc"), ("intent", "fd"), ("intent", "fe")}
    # the next run finishes fc; a later pruning merges the compacted file with the new segments
    _book(any_storage, "run-2", [("fc", "tc", "succeeded", None)])
    await _journal(any_storage, "run-2", [("intent", "ff", None), ("task", "ff", "tf")])
    prune_journal(any_storage, R, K, RULES)
    state = read_journal(any_storage, R, K)
    assert set(state.tasks) == {"fd", "ff"} and set(state.intents) == {"fd", "fe", "ff"}
    assert len(list_journal(any_storage, R, K).compacted) == 1


@pytest.mark.external
@pytest.mark.parametrize("point", ["mid_write", "after_commit", "mid_delete"])
async def test_a_kill_mid_pruning_keeps_every_needed_entry_once(tmp_path, point):
    await kill_pruning_and_check(str(tmp_path / "root"), point)


async def kill_pruning_and_check(root: str, point: str) -> None:
    storage = Storage(root)
    await _history(storage)
    before = _needed_view(storage)
    count = sum(len(v) for v in read_journal(storage, R, K).tasks.values())
    child = subprocess.run(
        [sys.executable, "-m", "tests.storage.prune_child", root, point], cwd=REPO, capture_output=True, timeout=120
    )
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    assert _needed_view(Storage(root)) == before
    after = sum(len(v) for v in read_journal(Storage(root), R, K).tasks.values())
    assert after in (count, 2)  # every task entry once (not yet pruned), or only the two still needed
    prune_journal(Storage(root), R, K, RULES)
    assert _needed_view(Storage(root)) == before
    assert list_journal(Storage(root), R, K).leftovers == []


async def test_pruning_in_small_batches_keeps_the_same_entries(tmp_path, monkeypatch):
    """Fingerprints decided a few at a time, stubs packed and read back a few rows at a time: the same
    entries are kept as when everything fits in one batch."""
    from nbpro_pipeline.storage import journal_prune, journal_stubs

    kept = []
    for batch, rows in ((1024, 1024), (2, 3)):
        monkeypatch.setattr(journal_prune, "_BATCH", batch)
        monkeypatch.setattr(journal_stubs, "_ROWS", rows)
        monkeypatch.setattr(journal_stubs, "_CHUNK", rows)
        storage = Storage(str(tmp_path / f"root-{batch}"))
        await _history(storage)
        before = _needed_view(storage)
        pruned = prune_journal(storage, R, K, RULES)
        assert (pruned.entries_before, pruned.entries_kept) == (9, 5) and _needed_view(storage) == before
        compacted = list_journal(storage, R, K).compacted[pruned.written]
        kept.append([(e.kind, e.fingerprint, e.task_id, e.row) for e in compacted.entries])
    assert kept[0] == kept[1]
