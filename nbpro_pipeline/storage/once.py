"""Each task counted once, whatever wrote its rows.

A task's rows carry net amounts (a held price, then the settlement's difference), so within one chain
of runs they add up to what the task cost, and every row also says that total (``task_total``). Two
writers that did not see each other (runs that overlapped before the cell lease existed, or a holder
that lost its lease) each book the task in full: their nets add up to twice the total. Readers put
that right here, in one place: the latest row of such a task carries the difference, so the rows add
up to its latest ``task_total`` again. Nothing is dropped or moved between days; a consistent ledger
(every task's rows adding up) comes back unchanged, so applying it twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

ONCE_COLUMNS = ("task_id", "run_id", "recorded_at", "final_cost", "task_total", "estimated_usd")
KEY_COLUMNS = ("task_id", "run_id", "recorded_at")
RowKey = tuple[str, str, datetime]  # of the row that carries a correction


@dataclass(frozen=True)
class Correction:
    cost: Decimal  # added to the row's final_cost
    usd: Decimal | None  # added to its estimated_usd


def corrections(table: pa.Table) -> dict[RowKey, Correction]:
    """The corrections one cell's rows need (``table`` holds at least ``ONCE_COLUMNS``, in ledger order).
    Only a task with more than one row can need one, so only those rows are looked at one by one."""
    ids = table["task_id"]
    counts = pc.value_counts(ids)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1)).drop_null()
    if len(repeated) == 0:
        return {}
    # two providers could in principle name tasks alike: a table of several cells groups by provider too
    names = [*ONCE_COLUMNS, *(["provider"] if "provider" in table.column_names else [])]
    rows: dict[tuple[str | None, str], list[dict]] = {}
    for row in table.filter(pc.is_in(ids, value_set=repeated)).select(names).to_pylist():
        rows.setdefault((row.get("provider"), row["task_id"]), []).append(row)
    out: dict[RowKey, Correction] = {}
    for (_, task_id), task_rows in rows.items():
        found = _correction(task_rows)
        if found is not None:
            out[(task_id, *found[0])] = found[1]
    return out


def _correction(rows: list[dict]) -> tuple[tuple[str, datetime], Correction] | None:
    ordered = sorted(rows, key=lambda r: r["recorded_at"])  # stable: ledger order on ties
    latest = ordered[-1]
    total = latest["task_total"]
    if total is None:  # rows of a version that did not record totals add up by construction
        return None
    delta = total - sum((r["final_cost"] or Decimal(0)) for r in ordered)
    if delta == 0:
        return None
    rate = next((r["estimated_usd"] / r["final_cost"] for r in ordered if r["final_cost"] and r["estimated_usd"]), None)
    return (latest["run_id"], latest["recorded_at"]), Correction(delta, None if rate is None else delta * rate)


def apply(table: pa.Table, found: dict[RowKey, Correction]) -> pa.Table:
    """``table`` with the ``found`` corrections added to the rows they name (it needs ``KEY_COLUMNS``;
    ``final_cost`` and ``estimated_usd`` are corrected where present)."""
    if not found or table.num_rows == 0:
        return table
    keys = zip(*(table[c].to_pylist() for c in KEY_COLUMNS), strict=True)
    hits = [(i, found[k]) for i, k in enumerate(keys) if k[0] is not None and k in found]
    if not hits:
        return table
    for name, part in (("final_cost", "cost"), ("estimated_usd", "usd")):
        if name in table.column_names:
            values = table[name].to_pylist()
            for i, c in hits:
                add = getattr(c, part)
                if add is not None:
                    values[i] = (values[i] or Decimal(0)) + add
            table = table.set_column(
                table.column_names.index(name), name, pa.array(values, table.schema.field(name).type)
            )
    return table


def counted_once(table: pa.Table) -> pa.Table:
    """A whole table (one cell, or several: a task id never spans cells) with each task counted once."""
    if table.num_rows == 0 or not set(ONCE_COLUMNS) <= set(table.column_names):
        return table
    return apply(table, corrections(table))
