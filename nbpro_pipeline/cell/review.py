"""A cell reviewed after its run: its ledger read once, then its view and every check on it."""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel

from nbpro_pipeline.cell.checks import FailureThresholds, failure_rate, prompts_resolved, run_checks, unaccounted_ids
from nbpro_pipeline.cell.ledger import read_cell_ledger
from nbpro_pipeline.cell.view import CellView, cell_view
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.engine.run import CellResult
from nbpro_pipeline.models.check import CheckOutcome
from nbpro_pipeline.storage.filesystem import Storage


class CellReview(BaseModel):
    view: CellView
    checks: list[CheckOutcome]  # the run's (accounting, images, reconciliation), then the cell's


def review_cell(
    result: CellResult,
    storage: Storage,
    cell_rows: pa.Table,
    prices: PriceTable,
    thresholds: FailureThresholds,
    *,
    require_c2pa: bool = False,
) -> CellReview:
    """The view and every check of the cell ``result`` ran, from one read of the cell's ledger;
    ``cell_rows`` is the cell's eligible rows (``CellRows.table``), ``require_c2pa``: signing is on."""
    report = result.report
    ledger = read_cell_ledger(storage, report.provider, report.resolution, result.run_id)
    view = cell_view(ledger, storage, report, prices)
    eligible = max(report.eligible, cell_rows.num_rows)
    unaccounted = unaccounted_ids(cell_rows, ledger.table) if cell_rows.num_rows else []
    checks = [
        *run_checks(result, ledger, storage, require_c2pa=require_c2pa),
        failure_rate(view.state, eligible, thresholds),
        prompts_resolved(view.state, unaccounted),
    ]
    return CellReview(view=view, checks=checks)
