"""What a cell run needs from the past, read once and cheaply: one listing of the cell's own directory.

A run needs four facts from earlier runs: which fingerprints already have a stored image, what each task
was already charged (a resumed task is booked net of it), the latest error code of each task (a task
whose latest outcome is resumable is polled again), and what the provider spent today (the daily budget).
``read_ledger`` over the whole tree gave all of it at the price of every part ever written; here the
history of one cell is one directory listing plus its live parts (few, once compacted), read with only
the seven columns needed and aggregated by Arrow, and the day's spend reads only the parts named for
that day (``ledger_parts``). The image check stats only the candidates a run asks about, never lists a
year of images.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import LEDGER_SCHEMA, OutcomeStatus
from nbpro_pipeline.storage.filesystem import Storage, cell_dir
from nbpro_pipeline.storage.ledger import read_parts
from nbpro_pipeline.storage.ledger_parts import LedgerPart, cell_parts

HISTORY_COLUMNS = ["fingerprint", "status", "task_id", "error_code", "final_cost", "image_uri", "recorded_at"]
_ZERO = Decimal(0)
# above this many candidates, one listing of the image directory is cheaper than a stat per image
_STAT_LIMIT = 512


@dataclass(frozen=True)
class TaskHistory:
    """One provider task across every ledger row that booked it."""

    charged: Decimal  # net amounts of its rows, summed: what the provider has been paid for it so far
    latest_error_code: str | None  # of its latest row (by recorded_at)
    failed: bool  # its latest row is a failure


@dataclass
class CellHistory:
    """Earlier runs of one (provider, resolution) cell: the ledger rows' seven columns, asked about by key.

    Nothing is aggregated up front and nothing here makes a Python object per history row: a run asks
    about the fingerprints of its own rows and the task ids of its journal, so each question first
    selects those rows (one hash probe over the columns) and then aggregates only them. What a run pays
    grows with its work, not with the year behind it. ``None`` as the keys asks about everything.
    """

    provider: str
    resolution: Resolution
    table: pa.Table = field(default_factory=lambda: LEDGER_SCHEMA.empty_table().select(HISTORY_COLUMNS))
    parts: int = 0

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def succeeded_images(self, fingerprints: Iterable[str] | None = None) -> dict[str, str]:
        """fingerprint -> image URI of its latest succeeded row, for ``fingerprints`` (default: all)."""
        rows = _where(self.table, "fingerprint", fingerprints)
        ok = pc.and_(pc.fill_null(pc.equal(rows["status"], _SUCCEEDED), False), pc.is_valid(rows["image_uri"]))
        rows = _in_time_order(rows.filter(ok))
        return dict(zip(rows["fingerprint"].to_pylist(), rows["image_uri"].to_pylist(), strict=True))

    def stored(self, storage: Storage, fingerprints: Iterable[str] | None = None) -> set[str]:
        """Fingerprints (of ``fingerprints``, default all) with a succeeded row whose image still exists."""
        wanted = self.succeeded_images(fingerprints)
        if not wanted:
            return set()
        if len(wanted) > _STAT_LIMIT:
            image_dir = storage.path("images", cell_dir(self.provider, self.resolution))
            present = {storage.uri(p) for p in storage.find(image_dir)}
            return {fp for fp, uri in wanted.items() if uri in present}
        items = list(wanted.items())
        with ThreadPoolExecutor(max_workers=8) as pool:
            exists = list(pool.map(lambda item: _uri_exists(storage, item[1]), items))
        return {fp for (fp, _), ok in zip(items, exists, strict=True) if ok}

    def tasks(self, task_ids: Iterable[str] | None = None) -> dict[str, TaskHistory]:
        """task id -> its history, for ``task_ids`` (default: all) that the ledger has booked."""
        rows = _where(self.table.filter(pc.is_valid(self.table["task_id"])), "task_id", task_ids)
        if rows.num_rows == 0:
            return {}
        numbered = rows.append_column("_n", pa.array(np.arange(rows.num_rows)))
        cost = pc.fill_null(numbered["final_cost"], pa.scalar(_ZERO, numbered.schema.field("final_cost").type))
        numbered = numbered.set_column(numbered.schema.get_field_index("final_cost"), "final_cost", cost)
        agg = numbered.group_by("task_id", use_threads=False).aggregate([("final_cost", "sum"), ("_n", "max")])
        latest = numbered.take(agg["_n_max"])  # rows are in time order: the highest index is the latest row
        return {
            task: TaskHistory(charged=Decimal(charged), latest_error_code=code, failed=status == _FAILED)
            for task, charged, code, status in zip(
                agg["task_id"].to_pylist(),
                agg["final_cost_sum"].to_pylist(),
                latest["error_code"].to_pylist(),
                latest["status"].to_pylist(),
                strict=True,
            )
        }

    def task_ids(self) -> set[str]:
        """Every task id the ledger has booked in this cell."""
        return set(pc.unique(pc.drop_null(self.table["task_id"])).to_pylist())

    def tasks_with_latest_code(self, codes: Iterable[str]) -> set[str]:
        """Tasks whose latest row carries one of ``codes`` (only tasks with such a row are looked at)."""
        codes = pa.array(sorted(set(codes)), pa.string())
        hits = self.table.filter(pc.fill_null(pc.is_in(self.table["error_code"], value_set=codes), False))
        candidates = set(pc.drop_null(hits["task_id"]).to_pylist())
        if not candidates:
            return set()
        allowed = set(codes.to_pylist())
        return {task for task, t in self.tasks(candidates).items() if t.latest_error_code in allowed}

    def failed_tasks(self, fingerprints: Iterable[str] | None = None) -> dict[str, set[str]]:
        """fingerprint -> the tasks with a failed row, for ``fingerprints`` (default: all)."""
        rows = _where(self.table, "fingerprint", fingerprints)
        rows = rows.filter(
            pc.and_(pc.fill_null(pc.equal(rows["status"], _FAILED), False), pc.is_valid(rows["task_id"]))
        )
        out: dict[str, set[str]] = {}
        for fp, task in zip(rows["fingerprint"].to_pylist(), rows["task_id"].to_pylist(), strict=True):
            out.setdefault(fp, set()).add(task)
        return out


_SUCCEEDED, _FAILED = OutcomeStatus.SUCCEEDED.value, OutcomeStatus.FAILED.value


def _where(table: pa.Table, column: str, keys: Iterable[str] | None) -> pa.Table:
    if keys is None or table.num_rows == 0:
        return _in_time_order(table) if table.num_rows else table
    keys = pa.array(list(dict.fromkeys(keys)), pa.string())
    return _in_time_order(table.filter(pc.is_in(table[column], value_set=keys)))


def _in_time_order(table: pa.Table) -> pa.Table:
    """Rows by ``recorded_at`` (stable: ledger order on ties), so that the last one of a key is its latest."""
    return table.sort_by([("recorded_at", "ascending")]) if table.num_rows > 1 else table


def _uri_exists(storage: Storage, uri: str) -> bool:
    return storage.fs.exists(uri if storage.is_local else storage.fs._strip_protocol(uri))


def load_cell_history(storage: Storage, provider: str, resolution: Resolution | str) -> CellHistory:
    """The history of one cell from its own directory only (see the module docstring)."""
    resolution = Resolution(resolution)
    parts = cell_parts(storage, provider, resolution)
    table = read_parts(storage, [p.path for p in parts], HISTORY_COLUMNS)
    return CellHistory(provider, resolution, table=table, parts=len(parts))


def _day_bounds(day: date) -> tuple[pa.Scalar, pa.Scalar]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    ts = pa.timestamp("us", tz="UTC")
    return pa.scalar(start, ts), pa.scalar(start + timedelta(days=1), ts)


def parts_for_day(storage: Storage, provider: str, day: date) -> list[LedgerPart]:
    """The live parts of ``provider`` (every resolution) that may hold rows charged on ``day``."""
    return [
        part for resolution in Resolution for part in cell_parts(storage, provider, resolution) if part.may_hold(day)
    ]


def spent_on(storage: Storage, provider: str, day: date) -> Decimal:
    """Exact sum of ``final_cost`` of ``provider``'s rows charged on the UTC ``day`` (``finished_at``, else
    ``recorded_at``), every status, read from that day's parts only; equals
    ``costs.spent_today_from_ledger(read_ledger(storage), provider, day)``."""
    parts = parts_for_day(storage, provider, day)
    table = read_parts(storage, [p.path for p in parts], ["final_cost", "finished_at", "recorded_at"])
    if table.num_rows == 0:
        return _ZERO
    start, end = _day_bounds(day)
    at = pc.coalesce(table["finished_at"], table["recorded_at"])
    mask = pc.fill_null(pc.and_(pc.greater_equal(at, start), pc.less(at, end)), False)
    total = pc.sum(table.filter(mask)["final_cost"]).as_py()
    return _ZERO if total is None else Decimal(total)
