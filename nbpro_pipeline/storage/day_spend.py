"""What a provider spent on one UTC day, read from the ledger parts named for that day only (the daily
budget's starting point): a part never spans two days (``ledger_parts``), so a year of parts is not read."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.ledger import read_parts
from nbpro_pipeline.storage.ledger_parts import LedgerPart, cell_parts

_ZERO = Decimal(0)


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
    ``recorded_at``), every status: failed rows may have been billed, skipped rows cost 0."""
    parts = parts_for_day(storage, provider, day)
    table = read_parts(storage, [p.path for p in parts], ["final_cost", "finished_at", "recorded_at"])
    if table.num_rows == 0:
        return _ZERO
    start, end = _day_bounds(day)
    at = pc.coalesce(table["finished_at"], table["recorded_at"])
    mask = pc.fill_null(pc.and_(pc.greater_equal(at, start), pc.less(at, end)), False)
    total = pc.sum(table.filter(mask)["final_cost"]).as_py()
    return _ZERO if total is None else Decimal(total)
