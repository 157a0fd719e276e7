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

import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.models.common import Provider, Resolution
from nbpro_pipeline.models.ledger import OutcomeStatus
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
    """Earlier runs of one (provider, resolution) cell, as the engine asks about them."""

    provider: Provider
    resolution: Resolution
    succeeded_images: dict[str, str] = field(default_factory=dict)  # fingerprint -> image URI of a success
    tasks: dict[str, TaskHistory] = field(default_factory=dict)  # task id -> its history
    failed_tasks: dict[str, set[str]] = field(default_factory=dict)  # fingerprint -> tasks whose rows failed
    rows: int = 0
    parts: int = 0

    def stored(self, storage: Storage, fingerprints: Iterable[str] | None = None) -> set[str]:
        """Fingerprints (of ``fingerprints``, default all) with a succeeded row whose image still exists."""
        wanted = (
            self.succeeded_images
            if fingerprints is None
            else {fp: self.succeeded_images[fp] for fp in set(fingerprints) if fp in self.succeeded_images}
        )
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

    def charged_by_task(self) -> dict[str, Decimal]:
        return {task: t.charged for task, t in self.tasks.items()}

    def latest_codes(self) -> dict[str, str | None]:
        return {task: t.latest_error_code for task, t in self.tasks.items()}


def _uri_exists(storage: Storage, uri: str) -> bool:
    return storage.fs.exists(uri if storage.is_local else storage.fs._strip_protocol(uri))


def load_cell_history(storage: Storage, provider: Provider | str, resolution: Resolution | str) -> CellHistory:
    """The history of one cell from its own directory only (see the module docstring)."""
    provider, resolution = Provider(provider), Resolution(resolution)
    parts = cell_parts(storage, provider, resolution)
    table = read_parts(storage, [p.path for p in parts], HISTORY_COLUMNS)
    history = CellHistory(provider, resolution, rows=table.num_rows, parts=len(parts))
    if table.num_rows == 0:
        return history
    table = table.sort_by([("recorded_at", "ascending")])
    ok = table.filter(pc.fill_null(pc.equal(table["status"], OutcomeStatus.SUCCEEDED.value), False))
    ok = ok.filter(pc.is_valid(ok["image_uri"]))
    history.succeeded_images = dict(zip(ok["fingerprint"].to_pylist(), ok["image_uri"].to_pylist(), strict=True))
    _add_tasks(history, table.filter(pc.is_valid(table["task_id"])))
    return history


def _add_tasks(history: CellHistory, rows: pa.Table) -> None:
    if rows.num_rows == 0:
        return
    numbered = rows.append_column("n", pa.array(range(rows.num_rows), pa.int64()))
    cost = pc.fill_null(numbered["final_cost"], pa.scalar(_ZERO, numbered.schema.field("final_cost").type))
    numbered = numbered.set_column(numbered.schema.get_field_index("final_cost"), "final_cost", cost)
    agg = numbered.group_by("task_id").aggregate([("final_cost", "sum"), ("n", "max")])
    latest = numbered.take(agg["n_max"])  # rows are in recorded_at order: the max index is the latest row
    failed_flag = pc.fill_null(pc.equal(latest["status"], OutcomeStatus.FAILED.value), False)
    for task, charged, code, failed in zip(
        agg["task_id"].to_pylist(),
        agg["final_cost_sum"].to_pylist(),
        latest["error_code"].to_pylist(),
        failed_flag.to_pylist(),
        strict=True,
    ):
        history.tasks[task] = TaskHistory(charged=Decimal(charged or 0), latest_error_code=code, failed=failed)
    failed_rows = rows.filter(pc.fill_null(pc.equal(rows["status"], OutcomeStatus.FAILED.value), False))
    for fp, task in zip(failed_rows["fingerprint"].to_pylist(), failed_rows["task_id"].to_pylist(), strict=True):
        history.failed_tasks.setdefault(fp, set()).add(task)


def _day_bounds(day: date) -> tuple[pa.Scalar, pa.Scalar]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    ts = pa.timestamp("us", tz="UTC")
    return pa.scalar(start, ts), pa.scalar(start + timedelta(days=1), ts)


def parts_for_day(storage: Storage, provider: Provider | str, day: date) -> list[LedgerPart]:
    """The live parts of ``provider`` (every resolution) that may hold rows charged on ``day``."""
    return [
        part for resolution in Resolution for part in cell_parts(storage, provider, resolution) if part.may_hold(day)
    ]


def spent_on(storage: Storage, provider: Provider | str, day: date) -> Decimal:
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
