"""Journal pruning: a cell's journal files merged into one compacted file of the entries still needed.

Every submit journals an intent (with the row and request) and a task entry, so a year of runs leaves
~170K intents per cell, and every run read them all. Once an intent's task has a final ledger outcome,
nothing reads it again, except in the cases the engine's rules name (``JournalRules``); pruning keeps
exactly those, per fingerprint:

- a **task entry** whose task has no ledger row yet, or whose latest row carries a resumable code: the
  next run polls it again (never resubmits it), so it stays, with the fingerprint's latest intent (it
  holds the row and request an orphaned task is finished with);
- the **latest intent** when no ledger row of its fingerprint was recorded at or after it (a submit in
  flight, or a crash between the intent and the answer), or when a generation-0 resubmit would reuse its
  idempotency key and that key is not the one the engine would derive anyway (an older version's key);
- ``unknown`` entries go with their intent.
Older intents of a fingerprint are never used (readers take the latest by time), so they go.

Crash- and concurrency-safe like ledger compaction: the compacted file is written atomically and lists
every file it replaces; only then are those deleted, so a kill in between leaves duplicates that readers
skip (``journal.list_journal``). A run writing segments meanwhile is untouched (only listed files are
replaced). Call it under the cell's compaction lock (``compaction.prune_cell_journal``).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import RESUMABLE_CODES
from nbpro_pipeline.providers.base import idempotency_key
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.journal import (
    COMPACT_PREFIX,
    CompactedJournal,
    JournalEntry,
    list_journal,
)
from nbpro_pipeline.storage.journal_stubs import Where, by_fingerprint, full_entries, scan
from nbpro_pipeline.storage.ledger_id import ledger_id
from nbpro_pipeline.storage.past import FingerprintFacts, PastRows, open_past


@dataclass(frozen=True)
class JournalRules:
    """What the engine does with journal entries, as far as pruning must know."""

    resumable_codes: frozenset[str]  # a task whose latest row has one of these is polled again
    generation0_key: Callable[[str], str] | None  # fingerprint -> the key a first attempt derives


@dataclass
class JournalPruning:
    files_before: int = 0
    entries_before: int = 0
    entries_kept: int = 0
    deleted: int = 0
    written: str | None = None


def default_rules(storage: Storage) -> JournalRules:
    """The engine's rules: which codes it resumes, and the key it derives for a first attempt."""
    lid = ledger_id(storage)
    return JournalRules(RESUMABLE_CODES, lambda fp: idempotency_key(lid, fp, 0))


def needed(entries: list[JournalEntry], facts: FingerprintFacts, rules: JournalRules) -> list[JournalEntry]:
    """The entries of one fingerprint a later run may still need (see the module docstring)."""
    resumable = {t for t, f in facts.tasks.items() if f.latest_error_code in rules.resumable_codes}
    tasks = [e for e in entries if e.kind == "task" and (e.task_id not in facts.tasks or e.task_id in resumable)]
    intents = [e for e in entries if e.kind == "intent"]
    if not intents:
        return tasks
    latest = max(intents, key=lambda e: e.at)
    if tasks or facts.last_recorded_at is None or facts.last_recorded_at < latest.at or _own_key(latest, facts, rules):
        return [*tasks, latest, *(e for e in entries if e.kind == "unknown")]
    return tasks


def _own_key(intent: JournalEntry, facts: FingerprintFacts, rules: JournalRules) -> bool:
    """Whether a generation-0 resubmit would reuse a key the engine would not derive itself."""
    if not intent.idempotency_key or rules.generation0_key is None:
        return False
    resumable = {t for t, f in facts.tasks.items() if f.latest_error_code in rules.resumable_codes}
    generation = len(facts.failed_tasks - resumable)
    return generation == 0 and intent.idempotency_key != rules.generation0_key(intent.fingerprint)


def prune_journal(
    storage: Storage,
    provider: str,
    resolution: Resolution,
    rules: JournalRules,
    past: PastRows | None = None,
) -> JournalPruning:
    """Merge the cell's journal files into one compacted file of the needed entries; see the module docstring.
    ``past``: the cell's ledger as of now (read here if not given; it must be at least as new as the listing)."""
    files = list_journal(storage, provider, resolution)
    outcome = JournalPruning(files_before=len(files.compacted) + len(files.segments))
    for name in files.leftovers:  # what a present compacted file replaces: a kill's leftovers
        outcome.deleted += _remove(storage, f"{files.directory}/{name}")
    if outcome.files_before == 0:
        return outcome
    stubs = scan(storage, files)
    outcome.entries_before = stubs.count
    past = past or open_past(storage, provider, resolution, one_pass=True)  # ``_decide`` goes in bucket order
    buckets = past.reader.manifest.buckets if past.reader is not None else 1
    kept = full_entries(storage, files, stubs, _decide(stubs.table(buckets), past, rules))
    outcome.entries_kept = len(kept)
    now = datetime.now(UTC)
    name = f"{COMPACT_PREFIX}{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.json"
    replaces = sorted([*files.compacted, *files.segments])
    body = CompactedJournal(replaces=replaces, entries=kept, created=now)
    storage.write_bytes(f"{files.directory}/{name}", body.model_dump_json(exclude_none=True).encode())  # commit
    outcome.written = name
    # segments first (a kill then keeps the old compacted file, which the new one replaces)
    outcome.deleted += _remove_all(storage, [f"{files.directory}/{old}" for old in files.segments])
    outcome.deleted += _remove_all(storage, [f"{files.directory}/{old}" for old in files.compacted])
    if storage.is_local:
        _remove_empty_dirs(files.directory)
    return outcome


_BATCH = 256  # fingerprints decided at a time: their ledger facts and stubs are what is held (docs/performance.md)


def _decide(stubs: pa.Table, past: PastRows, rules: JournalRules) -> list[Where]:
    """Where the entries still needed are, deciding a batch of fingerprints at a time."""
    kept: list[Where] = []
    for batch in by_fingerprint(stubs, _BATCH):
        facts = past.facts([fp for fp, _ in batch])
        for fp, located in batch:
            entries, where = _as_read(located)
            kept.extend(where[id(entry)] for entry in needed(entries, facts[fp], rules))
    return kept


def _as_read(located: list[tuple[JournalEntry, Where]]) -> tuple[list[JournalEntry], dict[int, Where]]:
    """A fingerprint's entries as ``needed`` takes them: the others in read order, then only the latest
    intent (by time; on a tie the one read last), as readers use no other."""
    others = [(e, w) for e, w in located if e.kind != "intent"]
    latest = None
    for e, w in located:
        if e.kind == "intent" and (latest is None or e.at >= latest[0].at):
            latest = (e, w)
    chosen = [*others, *([latest] if latest else [])]
    return [e for e, _ in chosen], {id(e): w for e, w in chosen}


def _remove_all(storage: Storage, paths: list[str]) -> int:
    """Delete ``paths``: one at a time locally, 1,000 per request on object stores (a year of segments)."""
    if storage.is_local or len(paths) < 2:
        return sum(_remove(storage, path) for path in paths)
    for lo in range(0, len(paths), 1000):
        storage.fs.rm(paths[lo : lo + 1000])
    return len(paths)


def _remove(storage: Storage, path: str) -> int:
    try:
        storage.fs.rm_file(path)
        return 1
    except FileNotFoundError:
        return 0


def _remove_empty_dirs(directory: str) -> None:
    """Run directories left empty (object stores have none); a run writing into one makes it again."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            with contextlib.suppress(OSError):
                os.rmdir(path)
