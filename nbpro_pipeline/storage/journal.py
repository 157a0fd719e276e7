"""The write-ahead journal of one cell: what was about to be submitted, and which task it became.

A crash between "the provider created a task" and "the ledger recorded its outcome" must neither pay
twice nor lose the result. So before a submit the engine journals an *intent* (fingerprint, the
idempotency key, the request and its row), and the moment the provider answers, the *task id*. The
next run reads every segment: a task id with no ledger row is polled again, never resubmitted; an
intent without a task id is resubmitted with the same ``Idempotency-Key`` where the provider takes one
(it then returns the original task, uncharged). A provider with no such key has its submit window kept
short by flushing the task id at once, and measured.

Object stores cannot append, so the journal is a series of small immutable segments. Concurrent
coroutines share one flush (group commit): a burst of 64 submits costs one segment, not 64.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.task import TaskUrls
from nbpro_pipeline.storage.filesystem import Storage, safe_component

log = logging.getLogger(__name__)

EntryKind = Literal["intent", "task", "unknown"]


class JournalEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: EntryKind
    fingerprint: str
    run_id: str
    at: datetime
    idempotency_key: str | None = None
    task_id: str | None = None
    urls: TaskUrls | None = None  # task only: where the provider said to ask about it
    # intent only: enough to finish the task without the prompt table (it may have changed since)
    row: dict[str, Any] | None = None
    request: dict[str, Any] | None = None


class Journal:
    """Appends entries for one (cell, run) and makes them durable in shared flushes."""

    def __init__(self, storage: Storage, provider: str, resolution: Resolution, run_id: str) -> None:
        self.storage = storage
        self.dir = f"{storage.journal_dir(provider, resolution)}/{safe_component(run_id)}"
        self.run_id = run_id
        self._pending: list[str] = []
        self._added = 0
        self._durable = 0
        self._seq = 0
        self._token = uuid.uuid4().hex[:8]
        self._flushing: asyncio.Future[None] | None = None
        self.segments = 0

    def add(self, kind: EntryKind, fingerprint: str, **fields: Any) -> int:
        entry = JournalEntry(kind=kind, fingerprint=fingerprint, run_id=self.run_id, at=datetime.now(UTC), **fields)
        self._pending.append(entry.model_dump_json(exclude_none=True))
        self._added += 1
        return self._added

    async def sync(self, upto: int | None = None) -> None:
        """Return once entry number ``upto`` (default: every entry added so far) is on storage."""
        target = self._added if upto is None else upto
        while self._durable < target:
            if self._flushing is None:
                self._flushing = asyncio.ensure_future(self._flush())
            await asyncio.shield(self._flushing)

    def _segment_path(self) -> str:
        # the per-writer token keeps a second writer under the same run id from overwriting segments
        self._seq += 1
        return f"{self.dir}/seg-{self._seq:06d}-{self._token}.jsonl"

    async def _flush(self) -> None:
        lines, self._pending = self._pending, []
        try:
            if lines:
                path = self._segment_path()
                data = ("\n".join(lines) + "\n").encode()
                if self.storage.is_local:  # a small local write is faster inline than via a thread
                    self.storage.write_bytes(path, data)
                else:
                    await asyncio.to_thread(self.storage.write_bytes, path, data)
                self.segments += 1
            self._durable += len(lines)
        except BaseException:
            self._pending[:0] = lines  # not durable: the next sync must write them, not forget them
            raise
        finally:
            self._flushing = None

    def flush_now(self) -> None:
        """Synchronous flush for shutdown paths outside the event loop."""
        lines, self._pending = self._pending, []
        if lines:
            try:
                self.storage.write_bytes(self._segment_path(), ("\n".join(lines) + "\n").encode())
            except BaseException:
                self._pending[:0] = lines
                raise
            self.segments += 1
            self._durable += len(lines)


@dataclass
class JournalState:
    """What every earlier run of a cell left behind, per request fingerprint."""

    intents: dict[str, JournalEntry] = field(default_factory=dict)  # latest intent per fingerprint
    tasks: dict[str, list[JournalEntry]] = field(default_factory=dict)  # task entries per fingerprint
    unknown: dict[str, int] = field(default_factory=dict)  # submits whose outcome was never known
    segments: int = 0
    bad_lines: int = 0

    def unresolved_tasks(self, resolved_task_ids: Iterable[str]) -> dict[str, JournalEntry]:
        """Tasks the provider created whose outcome no ledger row holds: poll them, never resubmit."""
        done = set(resolved_task_ids)
        out: dict[str, JournalEntry] = {}
        for fp, entries in self.tasks.items():
            for entry in entries:
                if entry.task_id not in done:
                    out[fp] = entry  # the latest unresolved task of a fingerprint
        return out


COMPACT_PREFIX = "compact-"


class CompactedJournal(BaseModel):
    """A pruned journal file (``compact-….json`` in the cell's journal directory): the entries a later run
    may still need, and the journal files (relative to that directory) they stand in for."""

    replaces: list[str]
    entries: list[JournalEntry]
    created: datetime


@dataclass
class JournalFiles:
    """One listing of a cell's journal: what counts, and what a pruning left behind."""

    directory: str
    compacted: dict[str, CompactedJournal]  # relative name -> content, of the kept compacted files
    segments: list[str]  # relative names of the segments no kept compacted file replaces
    leftovers: list[str]  # relative names of files a kept compacted file replaces (a kill's leftovers)


def list_journal(storage: Storage, provider: str, resolution: Resolution) -> JournalFiles:
    directory = storage.journal_dir(provider, resolution)
    names = sorted(p[len(directory) + 1 :] for p in storage.find(directory))
    compacted: dict[str, CompactedJournal] = {}
    for name in names:
        if name.startswith(COMPACT_PREFIX) and name.endswith(".json"):
            try:
                compacted[name] = CompactedJournal.model_validate_json(storage.read_bytes(f"{directory}/{name}"))
            except ValueError as exc:  # written atomically: this is damage, and it may hold paid tasks
                raise RuntimeError(
                    f"{storage.uri(f'{directory}/{name}')} is unreadable ({exc}); it lists journaled tasks that "
                    "may still need finishing: restore it from a backup or move it aside knowingly"
                ) from exc
    replaced_files = set().union(*(set(c.replaces) for c in compacted.values())) if compacted else set()
    kept = {n: c for n, c in compacted.items() if n not in replaced_files}
    replaced = set().union(*(set(c.replaces) for c in kept.values())) if kept else set()
    segments = [n for n in names if n.endswith(".jsonl") and n not in replaced]
    leftovers = [n for n in names if n in replaced or (n in compacted and n not in kept)]
    return JournalFiles(directory, kept, segments, leftovers)


def read_journal(storage: Storage, provider: str, resolution: Resolution) -> JournalState:
    """Every entry that counts: the kept compacted files' and the segments none of them replaces."""
    files = list_journal(storage, provider, resolution)
    state = JournalState()
    for compacted in files.compacted.values():
        state.segments += 1
        for entry in compacted.entries:
            _add(state, entry)
    for path, data in read_segments(storage, [f"{files.directory}/{name}" for name in files.segments]):
        state.segments += 1
        for entry in _entries(data, path, state):
            _add(state, entry)
    for entries in state.tasks.values():
        entries.sort(key=lambda e: e.at)
    return state


def read_segments(storage: Storage, paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """Each segment's bytes, in order: one at a time locally, 256 concurrent requests at a time elsewhere."""
    if storage.is_local:
        for path in paths:
            yield path, storage.read_bytes(path)
        return
    for lo in range(0, len(paths), 256):
        batch = paths[lo : lo + 256]
        fetched = storage.fs.cat(batch) if len(batch) > 1 else {batch[0]: storage.read_bytes(batch[0])}
        for path in batch:
            data = fetched.get(path)
            yield path, data if data is not None else fetched[storage.fs._strip_protocol(path)]


def _entries(data: bytes, path: str, state: JournalState) -> Iterator[JournalEntry]:
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            yield JournalEntry.model_validate(json.loads(line))
        except ValueError:
            state.bad_lines += 1
            log.warning("journal %s: skipping an unreadable line", path)


def _add(state: JournalState, entry: JournalEntry) -> None:
    if entry.kind == "intent":
        latest = state.intents.get(entry.fingerprint)
        if latest is None or entry.at >= latest.at:  # the latest intent by time, wherever it is kept
            state.intents[entry.fingerprint] = entry
    elif entry.kind == "task":
        state.tasks.setdefault(entry.fingerprint, []).append(entry)
    else:
        state.unknown[entry.fingerprint] = state.unknown.get(entry.fingerprint, 0) + 1
