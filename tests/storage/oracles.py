"""Test oracles: what a full read of the ledger answers, against which storage's fast paths are checked
(the fingerprint index, ``spent_on``). Slow on purpose: every row of the cell, or of the ledger."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.costs._ledger import LedgerLike, as_ledger_table
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.history_index import HISTORY_COLUMNS
from nbpro_pipeline.storage.ledger import read_parts
from nbpro_pipeline.storage.ledger_parts import cell_parts

_ZERO = Decimal(0)
_SUCCEEDED, _FAILED = OutcomeStatus.SUCCEEDED.value, OutcomeStatus.FAILED.value


@dataclass(frozen=True)
class TaskScan:
    """One provider task across every ledger row that booked it."""

    charged: Decimal  # net amounts of its rows, summed
    latest_error_code: str | None  # of its latest row (by recorded_at)
    failed: bool  # its latest row is a failure


@dataclass
class FullCellScan:
    """Every history row of one cell, read in full and asked about by key (``None``: every key)."""

    table: pa.Table
    parts: int

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def succeeded_images(self, fingerprints: Iterable[str] | None = None) -> dict[str, str]:
        """fingerprint -> image URI of its latest succeeded row."""
        rows = _where(self.table, "fingerprint", fingerprints)
        ok = pc.and_(pc.fill_null(pc.equal(rows["status"], _SUCCEEDED), False), pc.is_valid(rows["image_uri"]))
        rows = _in_time_order(rows.filter(ok))
        return dict(zip(rows["fingerprint"].to_pylist(), rows["image_uri"].to_pylist(), strict=True))

    def tasks(self, task_ids: Iterable[str] | None = None) -> dict[str, TaskScan]:
        """task id -> its rows summed, for ``task_ids`` the ledger has booked."""
        rows = _where(self.table.filter(pc.is_valid(self.table["task_id"])), "task_id", task_ids)
        if rows.num_rows == 0:
            return {}
        numbered = rows.append_column("_n", pa.array(np.arange(rows.num_rows)))
        cost = pc.fill_null(numbered["final_cost"], pa.scalar(_ZERO, numbered.schema.field("final_cost").type))
        numbered = numbered.set_column(numbered.schema.get_field_index("final_cost"), "final_cost", cost)
        agg = numbered.group_by("task_id", use_threads=False).aggregate([("final_cost", "sum"), ("_n", "max")])
        latest = numbered.take(agg["_n_max"])  # rows are in time order: the highest index is the latest row
        return {
            task: TaskScan(charged=Decimal(charged), latest_error_code=code, failed=status == _FAILED)
            for task, charged, code, status in zip(
                agg["task_id"].to_pylist(),
                agg["final_cost_sum"].to_pylist(),
                latest["error_code"].to_pylist(),
                latest["status"].to_pylist(),
                strict=True,
            )
        }

    def failed_tasks(self, fingerprints: Iterable[str] | None = None) -> dict[str, set[str]]:
        """fingerprint -> the tasks with a failed row."""
        rows = _where(self.table, "fingerprint", fingerprints)
        rows = rows.filter(
            pc.and_(pc.fill_null(pc.equal(rows["status"], _FAILED), False), pc.is_valid(rows["task_id"]))
        )
        out: dict[str, set[str]] = {}
        for fp, task in zip(rows["fingerprint"].to_pylist(), rows["task_id"].to_pylist(), strict=True):
            out.setdefault(fp, set()).add(task)
        return out


def _where(table: pa.Table, column: str, keys: Iterable[str] | None) -> pa.Table:
    if keys is None or table.num_rows == 0:
        return _in_time_order(table) if table.num_rows else table
    keys = pa.array(list(dict.fromkeys(keys)), pa.string())
    return _in_time_order(table.filter(pc.is_in(table[column], value_set=keys)))


def _in_time_order(table: pa.Table) -> pa.Table:
    """Rows by ``recorded_at`` (stable: ledger order on ties), so that the last one of a key is its latest."""
    return table.sort_by([("recorded_at", "ascending")]) if table.num_rows > 1 else table


def full_cell_scan(storage: Storage, provider: str, resolution: Resolution | str) -> FullCellScan:
    """Every live part of one cell, read in full (one listing of the cell's own directory)."""
    parts = cell_parts(storage, provider, Resolution(resolution))
    return FullCellScan(read_parts(storage, [p.path for p in parts], HISTORY_COLUMNS), parts=len(parts))


def spent_from_full_ledger(ledger: LedgerLike, provider: str, day: date) -> Decimal:
    """Exact sum of ``final_cost`` of ``provider``'s rows charged on the UTC ``day`` (``finished_at``, else
    ``recorded_at``), every status, over a whole ledger table."""
    table = as_ledger_table(ledger, ["provider", "final_cost", "finished_at", "recorded_at"])
    if table.num_rows == 0:
        return _ZERO
    ts_type = table.schema.field("recorded_at").type
    start = datetime.combine(day, time(0), tzinfo=UTC)
    at = pc.coalesce(table["finished_at"], table["recorded_at"])
    mask = pc.and_(
        pc.equal(table["provider"], str(provider)),
        pc.and_(
            pc.greater_equal(at, pa.scalar(start, ts_type)),
            pc.less(at, pa.scalar(start + timedelta(days=1), ts_type)),
        ),
    )
    total = pc.sum(table.filter(pc.fill_null(mask, False))["final_cost"]).as_py()
    return _ZERO if total is None else Decimal(total)
