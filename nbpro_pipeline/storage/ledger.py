"""The ledger dataset: immutable Parquet parts under ``ledger/provider=…/resolution=…/``.

Parts are never appended to or rewritten (object stores cannot append), so the writer buffers a few
hundred outcomes or a few seconds' worth and writes a new part. A crash loses at most the unflushed
buffer, and the journal brings those tasks back on the next run: they are polled again, not paid
again. Readers get the union of the live parts (see ``ledger_parts``: compaction merges small parts into
larger ones); tmp files are hidden (dot-prefixed) and never read.

Every part holds rows charged on one UTC day, named for it (``part-YYYYMMDD-HHMMSS-…``), so what a day
cost is read from that day's parts only.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import LEDGER_PARTITION_COLUMNS, LEDGER_SCHEMA, LedgerRecord, records_to_table
from nbpro_pipeline.storage.filesystem import Storage, cell_dir
from nbpro_pipeline.storage.ledger_parts import ledger_parts
from nbpro_pipeline.storage.once import ONCE_COLUMNS, counted_once

_HIVE = ds.partitioning(pa.schema([LEDGER_SCHEMA.field(c) for c in LEDGER_PARTITION_COLUMNS]), flavor="hive")


class LedgerWriter:
    """Buffers one cell's outcomes and writes them as Parquet parts; ``flush`` before trusting them."""

    def __init__(
        self,
        storage: Storage,
        provider: str,
        resolution: Resolution,
        run_id: str,
        *,
        flush_rows: int = 250,
        flush_interval_s: float = 2.0,
    ) -> None:
        self.storage = storage
        self.dir = storage.path("ledger", cell_dir(provider, resolution))
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._buffer: list[LedgerRecord] = []
        self._last_flush = time.monotonic()
        self._seq = 0
        self._lock = threading.Lock()
        self.written = 0
        self.parts: list[str] = []

    def add(self, record: LedgerRecord) -> None:
        if self._buffer and charged_at(record).date() != charged_at(self._buffer[0]).date():
            self.flush()  # one UTC day per part: the part's name then says which day it holds
        self._buffer.append(record)
        if len(self._buffer) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        with self._lock:  # a flush in a thread and a day-boundary flush never write the same rows
            self._flush()

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        records = list(self._buffer)
        # provider and resolution live in the directory names (hive), not in the file; the buffer is let
        # go only once the part is written, so a failed flush loses no row (the next flush writes it)
        table = records_to_table(records).drop_columns(list(LEDGER_PARTITION_COLUMNS))
        self._seq += 1
        stamp = min(charged_at(r) for r in records).strftime("%Y%m%d-%H%M%S")
        name = f"part-{stamp}-{_short(self.run_id)}-{self._seq:05d}-{uuid.uuid4().hex[:6]}.parquet"
        path = f"{self.dir}/{name}"
        with self.storage.open_atomic(path) as fh:
            pq.write_table(table, fh, compression="zstd")
        del self._buffer[: len(records)]
        self.parts.append(path)
        self.written += len(records)


def charged_at(record: LedgerRecord) -> datetime:
    """When a row's amount was charged, as the budget counts it: ``finished_at``, else ``recorded_at`` (UTC)."""
    at = record.finished_at or record.recorded_at
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def _short(run_id: str) -> str:
    return "".join(c for c in run_id if c.isalnum())[:12] or "run"


def read_ledger(
    storage: Storage | str,
    *,
    provider: str | None = None,
    resolution: Resolution | str | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Every ledger row (optionally one cell's), in ``LEDGER_SCHEMA`` column order; empty if none yet. Each
    task is counted once (``storage.once``): the rows of a task booked by two writers add up to it once."""
    storage = storage if isinstance(storage, Storage) else Storage(storage)
    wanted = columns or LEDGER_SCHEMA.names
    if not storage.exists(storage.ledger_dir()):
        return LEDGER_SCHEMA.empty_table().select(wanted)
    parts = ledger_parts(storage, provider=provider, resolution=resolution)
    read = [*wanted, *(c for c in (*ONCE_COLUMNS, "provider") if c not in wanted)]
    return counted_once(read_parts(storage, [p.path for p in parts], read)).select(wanted)


def ledger_dataset(storage: Storage, paths: list[str]) -> ds.Dataset:
    """The given part files as one dataset with the hive columns (provider, resolution) restored."""
    file_schema = pa.schema([f for f in LEDGER_SCHEMA if f.name not in LEDGER_PARTITION_COLUMNS])
    return ds.dataset(
        paths,
        filesystem=storage.fs,
        format="parquet",
        partitioning=_HIVE,
        partition_base_dir=storage.ledger_dir(),
        schema=pa.unify_schemas([file_schema, _HIVE.schema]),
    )


def read_parts(
    storage: Storage, paths: list[str], columns: list[str] | None = None, *, filter: ds.Expression | None = None
) -> pa.Table:
    """Rows of the given part files, in ``LEDGER_SCHEMA`` types and column order (``columns`` if given)."""
    wanted = columns or LEDGER_SCHEMA.names
    empty = LEDGER_SCHEMA.empty_table().select(wanted)
    if not paths:
        return empty
    if storage.is_local and filter is None and not set(wanted) & set(LEDGER_PARTITION_COLUMNS):
        return _read_files(storage, paths, empty.schema)
    return ledger_dataset(storage, paths).to_table(columns=wanted, filter=filter).cast(empty.schema)


def _read_files(storage: Storage, paths: list[str], schema: pa.Schema) -> pa.Table:
    """Local parts one file at a time on this thread, in ``schema`` (a column an older part lacks is null):
    Arrow's dataset scanner held ~0.5 MB of RSS per part read, which a small local file gains nothing from."""
    tables = []
    for path in paths:
        with storage.fs.open(path, "rb") as fh:
            parquet = pq.ParquetFile(fh, pre_buffer=False)
            present = [name for name in schema.names if name in parquet.schema_arrow.names]
            table = parquet.read(columns=present, use_threads=False)
        columns = [
            table[f.name].cast(f.type) if f.name in present else pa.nulls(table.num_rows, f.type) for f in schema
        ]
        tables.append(pa.Table.from_arrays(columns, schema=schema))
    return pa.concat_tables(tables)
