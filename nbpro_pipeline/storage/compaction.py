"""Ledger compaction: many small parts of a cell merged into one part per month, atomically.

Why: a run writes a part every few hundred rows or seconds, so a year of nightly runs leaves thousands
of files per cell, and every reader pays per file (a listing page, a GET, a footer). Compacting keeps the
file count near one per cell and month.

How it never loses or duplicates a row (see ``ledger_parts``):
1. list the cell once; delete what a present compacted part already replaces (a kill's leftovers);
2. per month group, read the live sources (older than ``min_age_s``; compacted parts of the group too),
   check their row count against their footers, sort by charge time, and write one compacted part
   whose footer lists every source (and, transitively, what compacted sources replaced). That write is
   the commit: a rename locally, a single PUT on object stores;
3. delete the sources. A kill before 3 leaves duplicates on disk that readers skip.
Runs writing new parts meanwhile are unaffected: parts are immutable and only the listed ones are touched.
4. under the same lock, write the cell's fingerprint index (``history_index``, covering the live parts
   as they now are) and prune its journal (``journal_prune``), so that the next run reads only its own
   buckets, a short tail and the entries still needed.
Two compactions of one cell are kept apart by a lock file (created exclusively where the filesystem can;
on object stores a write-then-read-back lease); should they still race, readers keep only one of two
compacted parts that replace the same sources.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import LEDGER_PARTITION_COLUMNS, LEDGER_SCHEMA
from nbpro_pipeline.storage.filesystem import Storage, cell_dir
from nbpro_pipeline.storage.history_index import write_index
from nbpro_pipeline.storage.journal_prune import JournalPruning, default_rules, prune_journal
from nbpro_pipeline.storage.ledger_parts import (
    REPLACES_KEY,
    LedgerPart,
    live_parts,
    parse_part,
    provider_name,
    replaced_by,
)

log = logging.getLogger(__name__)

ROWS_KEY = b"nbpro.rows"
_FILE_SCHEMA = pa.schema([f for f in LEDGER_SCHEMA if f.name not in LEDGER_PARTITION_COLUMNS])


class CompactionBusy(RuntimeError):
    """Another compaction holds this cell's lock."""


@dataclass
class CellCompaction:
    """What one cell's compaction did."""

    cell: str
    sources: int = 0  # parts merged
    written: list[str] = field(default_factory=list)  # compacted parts written
    rows: int = 0  # rows in the parts written
    deleted: int = 0  # files removed (sources, and leftovers of an earlier kill)
    busy: bool = False  # skipped: another compaction held the lock
    index_rows: int | None = None  # rows in the index written (None: none written)
    journal_entries: tuple[int, int] | None = None  # journal entries before and kept by pruning


@dataclass
class CompactionResult:
    cells: list[CellCompaction] = field(default_factory=list)

    @property
    def sources(self) -> int:
        return sum(c.sources for c in self.cells)

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.cells)

    @property
    def written(self) -> int:
        return sum(len(c.written) for c in self.cells)


def ledger_providers(storage: Storage) -> list[str]:
    """The providers the ledger has a directory for (``provider=<name>``), whatever the registry holds."""
    base = storage.ledger_dir()
    if not storage.exists(base):
        return []
    names = {p.split("provider=", 1)[1].split("/", 1)[0] for p in storage.find(base) if "provider=" in p}
    return sorted(names)


def compact_ledger(
    storage: Storage,
    *,
    provider: str | None = None,
    resolution: Resolution | str | None = None,
    min_age_s: float = 3600.0,
    lock_ttl_s: float = 900.0,
    index: bool = True,
    journal: bool = True,
) -> CompactionResult:
    """Compact every cell matching the filters; see the module docstring.

    ``min_age_s``: parts younger than this (by the time in their name) are left alone, so a warehouse
    loading new parts incrementally has time to load them before they are merged away. ``index`` and
    ``journal``: also write the cell's fingerprint index and prune its journal (step 4).
    """
    providers = [str(provider)] if provider is not None else ledger_providers(storage)
    resolutions = [Resolution(resolution)] if resolution is not None else list(Resolution)
    result = CompactionResult()
    for p in providers:
        for r in resolutions:
            result.cells.append(
                compact_cell(storage, p, r, min_age_s=min_age_s, lock_ttl_s=lock_ttl_s, index=index, journal=journal)
            )
    return result


def compact_cell(
    storage: Storage,
    provider: str,
    resolution: Resolution,
    *,
    min_age_s: float = 3600.0,
    lock_ttl_s: float = 900.0,
    index: bool = True,
    journal: bool = True,
) -> CellCompaction:
    directory = storage.path("ledger", cell_dir(provider, resolution))
    outcome = CellCompaction(cell=f"{provider_name(provider)}|{resolution.value}")
    try:
        with _cell_lock(storage, directory, lock_ttl_s):
            _compact_directory(storage, directory, min_age_s, outcome)
            if index or journal:
                _derive(storage, provider, resolution, outcome, index=index, journal=journal)
    except CompactionBusy as exc:
        log.info("%s: %s; skipped", outcome.cell, exc)
        outcome.busy = True
    return outcome


def _compact_directory(storage: Storage, directory: str, min_age_s: float, outcome: CellCompaction) -> None:
    paths = [p for p in storage.find(directory) if p.endswith(".parquet")]
    live = live_parts(storage, paths)
    live_names = {p.name for p in live}
    for path in paths:  # replaced by a compacted part that is present: a kill's leftover
        if path.rsplit("/", 1)[-1] not in live_names:
            _remove(storage, path, outcome)
    now = datetime.now(UTC)
    cutoff = now - timedelta(seconds=min_age_s)
    groups: dict[str, list[LedgerPart]] = {}
    for part in live:
        if part.compacted or part.created is None or part.created <= cutoff:
            groups.setdefault(part.group, []).append(part)
    for group, sources in sorted(groups.items()):
        if len(sources) < 2:
            continue
        written = _merge(storage, directory, group, sources, now)
        outcome.written.append(written[0])
        outcome.rows += written[1]
        outcome.sources += len(sources)
        for source in sources:
            _remove(storage, source.path, outcome)


def prune_cell_journal(
    storage: Storage, provider: str, resolution: Resolution, *, lock_ttl_s: float = 900.0
) -> JournalPruning | None:
    """Prune one cell's journal under the cell's lock; None when another compaction holds it."""
    directory = storage.path("ledger", cell_dir(provider, resolution))
    try:
        with _cell_lock(storage, directory, lock_ttl_s):
            return prune_journal(storage, provider, resolution, default_rules(storage))
    except CompactionBusy as exc:
        log.info("%s|%s: %s; journal not pruned", provider_name(provider), resolution.value, exc)
        return None


def _derive(
    storage: Storage,
    provider: str,
    resolution: Resolution,
    outcome: CellCompaction,
    *,
    index: bool,
    journal: bool,
) -> None:
    """Step 4: the fingerprint index of the cell as it now is, then the journal pruned against it."""
    if index:
        manifest = write_index(storage, provider, resolution)
        outcome.index_rows = sum(manifest.rows) if manifest else None
    if journal and storage.exists(storage.journal_dir(provider, resolution)):
        pruned = prune_journal(storage, provider, resolution, default_rules(storage))
        outcome.journal_entries = (pruned.entries_before, pruned.entries_kept)
        outcome.deleted += pruned.deleted


def _merge(storage: Storage, directory: str, group: str, sources: list[LedgerPart], now: datetime) -> tuple[str, int]:
    """Write the compacted part of ``sources`` (the commit); returns its path and row count."""
    tables, expected = [], 0
    replaces: set[str] = set()
    for source in sources:
        with storage.fs.open(source.path, "rb") as fh:
            parquet = pq.ParquetFile(fh)
            expected += parquet.metadata.num_rows
            tables.append(_conform(parquet.read()))
        replaces.add(source.name)
        if source.compacted:
            replaces |= replaced_by(storage, source)
    table = pa.concat_tables(tables)
    if table.num_rows != expected:
        raise RuntimeError(f"{directory}: read {table.num_rows} rows of {expected} from {len(sources)} parts")
    charged = pc.coalesce(table["finished_at"], table["recorded_at"])
    table = table.take(pc.sort_indices(pa.table({"t": charged}), sort_keys=[("t", "ascending")]))
    first, last = _day_range(pc.coalesce(table["finished_at"], table["recorded_at"]), now)
    digest = hashlib.sha256("\n".join(sorted(replaces)).encode()).hexdigest()[:12]
    name = f"part-compact-{group}-{first}-{last}-{now:%Y%m%dT%H%M%S}-{digest}.parquet"
    path = f"{directory}/{name}"
    metadata = {REPLACES_KEY: json.dumps(sorted(replaces)).encode(), ROWS_KEY: str(table.num_rows).encode()}
    table = table.replace_schema_metadata(metadata)
    with storage.open_atomic(path) as fh:
        pq.write_table(table, fh, compression="zstd", row_group_size=65536)
    parse_part(path)  # the name must parse back as a compacted part, or readers would not see it replace
    return path, table.num_rows


def _conform(table: pa.Table) -> pa.Table:
    """A part's rows in the file schema (an older part may lack newer columns, or carry hive columns)."""
    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in _FILE_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=_FILE_SCHEMA)


def _day_range(charged: pa.ChunkedArray, now: datetime) -> tuple[str, str]:
    lo, hi = pc.min(charged).as_py(), pc.max(charged).as_py()
    lo, hi = lo or now, hi or now
    return f"{lo:%Y%m%d}", f"{hi:%Y%m%d}"


def _remove(storage: Storage, path: str, outcome: CellCompaction) -> None:
    try:
        storage.fs.rm_file(path)
        outcome.deleted += 1
    except FileNotFoundError:
        pass


@contextmanager
def _cell_lock(storage: Storage, directory: str, ttl_s: float) -> Iterator[None]:
    """Hold ``_compaction.lock`` in the cell's directory (hidden from readers by its ``_``)."""
    path = f"{directory}/_compaction.lock"
    token = f"{uuid.uuid4().hex} {datetime.now(UTC).isoformat()}"
    _break_if_stale(storage, path, ttl_s)
    if storage.is_local:
        os.makedirs(directory, exist_ok=True)
        try:
            with open(path, "x") as fh:
                fh.write(token)
        except FileExistsError as exc:
            raise CompactionBusy(f"{path} is held by another compaction") from exc
    else:
        if storage.exists(path):
            raise CompactionBusy(f"{storage.uri(path)} is held by another compaction")
        storage.write_bytes(path, token.encode())
        if storage.read_bytes(path).decode() != token:
            raise CompactionBusy(f"{storage.uri(path)} was taken by another compaction")
    try:
        yield
    finally:
        with suppress(FileNotFoundError):
            storage.fs.rm_file(path)


def _break_if_stale(storage: Storage, path: str, ttl_s: float) -> None:
    """A lock older than ``ttl_s`` belonged to a compaction that was killed: remove it."""
    try:
        held = storage.read_bytes(path).decode()
    except FileNotFoundError:
        return
    try:
        since = datetime.fromisoformat(held.split(" ", 1)[1])
    except (IndexError, ValueError):
        since = datetime.min.replace(tzinfo=UTC)
    if datetime.now(UTC) - since >= timedelta(seconds=ttl_s):
        log.warning("%s: breaking a stale compaction lock (%s)", path, held)
        with suppress(FileNotFoundError):
            storage.fs.rm_file(path)
