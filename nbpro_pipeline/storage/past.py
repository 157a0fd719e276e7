"""The past of one cell, asked about by fingerprint: the index's buckets plus the tail, or the whole cell.

``open_past`` lists the cell's ledger directory once, reads the index manifest and checks its watermark
against the live parts (``history_index``); it then reads the tail (live parts the index does not cover)
in full, and a fingerprint's rows are its bucket's plus its tail rows. Without a usable index it reads
the cell as ``load_cell_history`` does. Either way ``facts`` answers only for the fingerprints asked,
and what that costs grows with them, not with the year behind them. A bucket that cannot be read later
(the file deleted by a newer index, damaged) switches the rest of the lookups to a fresh read of the
cell: a fingerprint asked for the first time then has no row of this run yet, so nothing is counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.history_index import (
    HISTORY_COLUMNS,
    HISTORY_SCHEMA,
    IndexReader,
    IndexUnusable,
    bucket_of,
    index_dir,
    read_manifest,
)
from nbpro_pipeline.storage.ledger import read_parts
from nbpro_pipeline.storage.ledger_parts import LedgerPart, cell_parts

log = logging.getLogger(__name__)
_SUCCEEDED, _FAILED = OutcomeStatus.SUCCEEDED.value, OutcomeStatus.FAILED.value
_RETRIES = 3


@dataclass(frozen=True)
class TaskFacts:
    """One provider task across its ledger rows."""

    charged: Decimal  # its latest row's task_total (what it cost in total), else its rows' nets summed
    latest_error_code: str | None  # of its latest row (by recorded_at, ledger order on ties)
    latest_status: str | None


@dataclass
class FingerprintFacts:
    """Everything the ledger holds about one fingerprint that a run needs."""

    image_uri: str | None = None  # of its latest succeeded row with an image
    tasks: dict[str, TaskFacts] = field(default_factory=dict)
    failed_tasks: set[str] = field(default_factory=set)  # tasks with a failed row
    last_recorded_at: datetime | None = None  # of its latest row
    rows: int = 0


def facts_of(rows: list[dict]) -> FingerprintFacts:
    """The facts of one fingerprint from its rows (already in time order)."""
    facts = FingerprintFacts(rows=len(rows))
    charged: dict[str, Decimal] = {}
    for row in rows:
        task, status = row["task_id"], row["status"]
        if status == _SUCCEEDED and row["image_uri"] is not None:
            facts.image_uri = row["image_uri"]
        if task is not None:
            # a row that knows its task's total says what the task cost; older rows add up their nets
            total = row.get("task_total")
            charged[task] = total if total is not None else charged.get(task, Decimal(0)) + (row["final_cost"] or 0)
            facts.tasks[task] = TaskFacts(charged[task], row["error_code"], status)
            if status == _FAILED:
                facts.failed_tasks.add(task)
        at = row["recorded_at"]
        if at is not None and (facts.last_recorded_at is None or at > facts.last_recorded_at):
            facts.last_recorded_at = at
    return facts


class _Rows:
    """A table whose rows are found by fingerprint through a dict built once (row numbers per value)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self._where: dict[str, list[int]] | None = None

    def of(self, fingerprints: Iterable[str]) -> dict[str, list[dict]]:
        if self.table.num_rows == 0:
            return {}
        where = self._where
        if where is None:  # built whole, then published: a thread never sees half of it
            where = {}
            for i, fp in enumerate(self.table["fingerprint"].to_pylist()):
                where.setdefault(fp, []).append(i)
            self._where = where
        wanted = [i for fp in fingerprints for i in where.get(fp, ())]
        out: dict[str, list[dict]] = {}
        for row in self.table.take(sorted(wanted)).to_pylist() if wanted else ():
            out.setdefault(row["fingerprint"], []).append(row)
        return out


@dataclass
class PastRows:
    """One cell's past, asked about by fingerprint; see the module docstring."""

    storage: Storage
    provider: str
    resolution: Resolution
    reader: IndexReader | None = None  # None: no usable index, ``rest`` is the whole cell
    rest: _Rows = field(default_factory=lambda: _Rows(HISTORY_SCHEMA.empty_table()))  # the tail, or the cell
    parts: int = 0  # live parts listed
    tail_parts: int = 0  # of which the index does not cover (all of them without an index)
    why_no_index: str | None = None
    one_pass: bool = False  # asked in bucket order, each fingerprint once: see ``open_past``
    _buckets: dict[int, pa.Table] = field(default_factory=dict)

    @property
    def indexed_rows(self) -> int:
        return sum(self.reader.manifest.rows) if self.reader else 0

    @property
    def rows(self) -> int:
        return self.indexed_rows + self.rest.table.num_rows

    def facts(self, fingerprints: Iterable[str]) -> dict[str, FingerprintFacts]:
        """Facts of each of ``fingerprints`` that has a ledger row (an empty one for those without)."""
        wanted = list(dict.fromkeys(fingerprints))
        found = self._rows_of(wanted)
        return {fp: facts_of(_in_time_order(found.get(fp, []))) for fp in wanted}

    def _rows_of(self, fps: list[str]) -> dict[str, list[dict]]:
        if self.reader is not None:
            try:
                return self._indexed_rows_of(fps)
            except IndexUnusable as exc:
                log.warning("%s|%s: %s; reading the cell instead", self.provider, self.resolution, exc)
                fresh = open_past(self.storage, self.provider, self.resolution, use_index=False)
                self.reader, self.rest, self.why_no_index = None, fresh.rest, str(exc)
        return self.rest.of(fps)

    def _fetch(self, buckets: list[int]) -> None:
        assert self.reader is not None
        _fetch_buckets(self.reader, buckets, self._buckets)

    def _indexed_rows_of(self, fps: list[str]) -> dict[str, list[dict]]:
        assert self.reader is not None
        by_bucket: dict[int, list[str]] = {}
        for fp in fps:
            by_bucket.setdefault(bucket_of(fp, self.reader.manifest.buckets), []).append(fp)
        if self.one_pass:  # the buckets asked before are done with (but the one this call starts in)
            self._buckets = {b: t for b, t in self._buckets.items() if b in by_bucket}
        self._fetch([b for b in by_bucket if b not in self._buckets])
        out: dict[str, list[dict]] = {}
        for b, members in by_bucket.items():
            table = self._buckets[b]
            hits = table.filter(pc.is_in(table["fingerprint"], value_set=pa.array(members, pa.string())))
            for row in hits.to_pylist():
                out.setdefault(row["fingerprint"], []).append(row)
        for fp, rows in self.rest.of(fps).items():  # the tail is newer: after the index's rows
            out.setdefault(fp, []).extend(rows)
        return out


def _fetch_buckets(reader: IndexReader, buckets: list[int], into: dict[int, pa.Table]) -> None:
    """Read ``buckets`` into ``into``: a memory map locally, concurrent range reads on object stores."""
    if reader.storage.is_local or len(buckets) < 2:
        for b in buckets:
            into[b] = reader.bucket(b)
        return
    with ThreadPoolExecutor(max_workers=min(8, len(buckets))) as pool:
        for b, table in zip(buckets, pool.map(reader.bucket, buckets), strict=True):
            into[b] = table


def _in_time_order(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: r["recorded_at"]) if len(rows) > 1 else rows


def open_past(
    storage: Storage, provider: str, resolution: Resolution | str, *, use_index: bool = True, one_pass: bool = False
) -> PastRows:
    """The past of one cell as of now (one listing, the manifest, the tail); blocking. ``one_pass``: the
    caller asks about fingerprints in index-bucket order, each once (journal pruning walks the whole cell):
    buckets are then read rather than memory-mapped and only those of the latest ``facts`` call are kept,
    so that the walk never holds the whole index (its mapped pages locally, its fetched buckets elsewhere)."""
    resolution = Resolution(resolution)
    for attempt in range(_RETRIES):
        parts = cell_parts(storage, provider, resolution)
        try:
            return _open(storage, provider, resolution, parts, use_index, one_pass)
        except FileNotFoundError:  # a part compacted away between the listing and the read: list again
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _open(
    storage: Storage, provider: str, resolution: Resolution, parts: list[LedgerPart], use_index: bool, one_pass: bool
) -> PastRows:
    past = PastRows(storage, provider, resolution, parts=len(parts), one_pass=one_pass)
    tail = parts
    if use_index:
        try:
            manifest = read_manifest(storage, provider, resolution)
            live = {p.name for p in parts}
            missing = [name for name in manifest.covers if name not in live]
            if missing:
                raise IndexUnusable(f"stale: {len(missing)} covered parts are no longer live (e.g. {missing[0]})")
            past.reader = IndexReader(storage, index_dir(storage, provider, resolution), manifest, mapped=not one_pass)
            covered = set(manifest.covers)
            tail = [p for p in parts if p.name not in covered]
        except IndexUnusable as exc:
            past.why_no_index = str(exc)
    past.tail_parts = len(tail)
    past.rest = _Rows(read_parts(storage, [p.path for p in tail], HISTORY_COLUMNS))
    return past
