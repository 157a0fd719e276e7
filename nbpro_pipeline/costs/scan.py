"""A cell's ledger rows in bounded batches, for reports and estimates that aggregate as they read.

``read_ledger`` returns a cell as one table: right for the engine, which needs the rows, but a report
over a year of history only needs sums, so holding the cell (and the copies each compute step makes of
it) sets its peak memory. Here a cell is read part by part, only the columns asked for, and handed out
as tables of about ``BATCH_ROWS`` rows: many small run parts are gathered into one batch (a group-by per
250-row part would cost more than the reading), a large compacted part is cut into several. Rows come
in the order ``read_ledger`` returns them (parts by name, rows in file order), so "later in the table"
means the same in both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

import pyarrow as pa
import pyarrow.parquet as pq

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import LEDGER_PARTITION_COLUMNS, LEDGER_SCHEMA
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.ledger_parts import LedgerPart, cell_parts, ledger_parts
from nbpro_pipeline.storage.once import KEY_COLUMNS, ONCE_COLUMNS, apply, corrections

BATCH_ROWS = 65_536  # one row group of a compacted part
# Parts read ahead of the one being aggregated, by this many threads: part by part is faster than a
# dataset scanner over many small parts, and holds less than its read-ahead (docs/performance.md).
_THREADS = 4
_WINDOW = 64

Where = Callable[[pa.Table], pa.Array | pa.ChunkedArray]  # a row filter, e.g. status == succeeded


def cell_batches(
    storage: Storage,
    provider: str,
    resolution: Resolution | str,
    columns: list[str],
    *,
    where: Where | None = None,
    rows: int | None = None,
) -> Iterator[pa.Table]:
    """The live rows of one cell (those ``where`` keeps, if given), ``columns`` in ``LEDGER_SCHEMA`` types,
    as tables of at least ``rows`` (default ``BATCH_ROWS``) rows, the last one may be smaller; nothing for
    an empty cell. Each task is counted once (``storage.once``)."""
    yield from _once(storage, cell_parts(storage, provider, resolution), columns, where, rows or BATCH_ROWS)


def ledger_batches(storage: Storage, columns: list[str], *, rows: int | None = None) -> Iterator[pa.Table]:
    """``cell_batches`` over every cell of the ledger (any provider directory), one cell after another."""
    if not storage.exists(storage.ledger_dir()):
        return
    by_cell: dict[str, list[LedgerPart]] = {}
    for part in ledger_parts(storage):
        by_cell.setdefault(part.path.rsplit("/", 1)[0], []).append(part)
    for parts in by_cell.values():
        yield from _once(storage, parts, columns, None, rows or BATCH_ROWS)


def _once(storage: Storage, parts: list[LedgerPart], columns: list[str], where: Where | None, rows: int):
    """``_batches`` of one cell with each task counted once: the corrections come from a first read of
    the few columns they need; the rows they name are corrected as they stream by."""
    whole = list(_batches(storage, parts, list(ONCE_COLUMNS), None, rows))
    found = corrections(pa.concat_tables(whole)) if whole else {}
    del whole
    if not found:
        yield from _batches(storage, parts, columns, where, rows)
        return
    extra = [c for c in KEY_COLUMNS if c not in columns]
    for batch in _batches(storage, parts, [*columns, *extra], where, rows):
        yield apply(batch, found).drop_columns(extra)


def _batches(storage: Storage, parts: list[LedgerPart], columns: list[str], where: Where | None, rows: int):
    schema = pa.schema([LEDGER_SCHEMA.field(c) for c in columns])
    pending: list[pa.Table] = []
    held = 0
    for table in _part_tables(storage, parts, schema):
        if where is not None:
            table = table.filter(where(table))
        if table.num_rows == 0:
            continue
        pending.append(table)
        held += table.num_rows
        if held >= rows:
            yield pa.concat_tables(pending).combine_chunks()
            pending, held = [], 0
    if pending:
        yield pa.concat_tables(pending).combine_chunks()


def _part_tables(storage: Storage, parts: list[LedgerPart], schema: pa.Schema) -> Iterator[pa.Table]:
    """Each part's rows, in order: run parts (a few hundred rows each) read ``_THREADS`` at a time, up to
    ``_WINDOW`` ahead, since most of the cost of a small part is opening it, which threads overlap;
    compacted parts a row group (64K rows) at a time, in this thread, so that memory holds one."""
    with ThreadPoolExecutor(_THREADS) as pool:
        queue = iter(parts)
        window = deque(pool.submit(_read_small, storage, p, schema) for p in islice(queue, _WINDOW))
        while window:
            part, tables = window.popleft().result()
            if (following := next(queue, None)) is not None:
                window.append(pool.submit(_read_small, storage, following, schema))
            yield from tables if tables is not None else _row_groups(storage, part, schema)


def _open(storage: Storage, part: LedgerPart) -> pq.ParquetFile:
    if storage.is_local:  # Arrow's own local files: through fsspec every read is a Python call
        return pq.ParquetFile(part.path, pre_buffer=False)
    return pq.ParquetFile(part.path, filesystem=storage.fs, pre_buffer=True)


def _read_small(storage: Storage, part: LedgerPart, schema: pa.Schema) -> tuple[LedgerPart, list[pa.Table] | None]:
    """A run part of at most one row group, read whole; a compacted or larger one is left to
    ``_row_groups`` (None), which reads it a row group at a time."""
    if part.compacted:
        return part, None
    with _open(storage, part) as file:
        if file.num_row_groups > 1:
            return part, None
        present = set(file.schema_arrow.names)
        table = file.read(columns=[c for c in schema.names if c in present], use_threads=False)
    return part, [_conform(table, part, schema)]


def _row_groups(storage: Storage, part: LedgerPart, schema: pa.Schema) -> Iterator[pa.Table]:
    with _open(storage, part) as file:
        present = set(file.schema_arrow.names)
        wanted = [c for c in schema.names if c in present]
        for i in range(file.num_row_groups):
            yield _conform(file.read_row_group(i, columns=wanted, use_threads=False), part, schema)


def _conform(table: pa.Table, part: LedgerPart, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``: the hive columns from the part's directory names, columns an older
    pipeline version did not write as nulls, every type as ``LEDGER_SCHEMA`` has it."""
    hive = _hive(part)
    arrays = []
    for field in schema:
        if field.name in LEDGER_PARTITION_COLUMNS and field.name in hive:
            arrays.append(pa.repeat(pa.scalar(hive[field.name], field.type), table.num_rows))
        elif field.name in table.column_names:
            column = table[field.name]
            arrays.append(column if column.type == field.type else column.cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def count_rows(storage: Storage, *, skip: set[tuple[str, str]] = frozenset()) -> int:
    """How many rows the ledger holds, from the live parts' footers (no column is read), leaving out the
    (provider, resolution) cells in ``skip``."""
    if not storage.exists(storage.ledger_dir()):
        return 0

    def rows(part: LedgerPart) -> int:
        with _open(storage, part) as file:
            return file.metadata.num_rows

    parts = [p for p in ledger_parts(storage) if _cell_of(p) not in skip]
    with ThreadPoolExecutor(_THREADS) as pool:
        return sum(pool.map(rows, parts))


def _cell_of(part: LedgerPart) -> tuple[str, str]:
    hive = _hive(part)
    return hive.get("provider", ""), hive.get("resolution", "")


def _hive(part: LedgerPart) -> dict[str, str]:
    """The ``key=value`` directory names above a part: its provider and resolution."""
    return dict(segment.split("=", 1) for segment in part.path.rsplit("/", 3)[-3:-1] if "=" in segment)
