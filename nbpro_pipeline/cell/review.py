"""A cell reviewed after its run: its ledger read once, then its view and every check on it; or, with no
run, the checks that can be judged from what is stored (``review_stored_cell``)."""

from __future__ import annotations

from collections.abc import Collection

import pyarrow as pa
from pydantic import BaseModel

from nbpro_pipeline.cell.checks import (
    FailureThresholds,
    check_accounting,
    check_stored_images,
    failure_rate,
    ledger_eligible,
    prompts_resolved,
    run_checks,
    run_failure_rate,
    unaccounted_ids,
)
from nbpro_pipeline.cell.ledger import read_cell_ledger
from nbpro_pipeline.cell.state import cell_state
from nbpro_pipeline.cell.usability import usable_images
from nbpro_pipeline.cell.view import CellView, cell_view
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.engine.run import CellResult
from nbpro_pipeline.models.check import CheckOutcome, Severity
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.storage.filesystem import Storage

# what review_stored_cell judges, in review_cell's order; the other two need a run: ``ledger_reconciles``
# compares the ledger with what the provider says (asked only by a run), ``run_failure_rate`` judges a run's
# new work
STORED_CHECKS = ("all_rows_accounted", "images_valid", "failure_rate", "prompts_resolved", "usable_images")
RUN_ONLY_CHECKS = ("ledger_reconciles", "run_failure_rate")


class CellReview(BaseModel):
    view: CellView
    checks: list[CheckOutcome]  # the run's (accounting, images, reconciliation), the cell's, the run's failure rate

    @property
    def lost_run(self) -> CheckOutcome | None:
        """``run_failure_rate`` when it failed at ERROR: the run lost more than the error threshold of its
        new work, whatever the cell's older images say (the asset then fails the step: docs/ui.md)."""
        return next(
            (c for c in self.checks if c.name == "run_failure_rate" and not c.passed and c.severity is Severity.ERROR),
            None,
        )


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
    prompts = (
        dict(zip(cell_rows["prompt_id"].to_pylist(), cell_rows["prompt"].to_pylist(), strict=True))
        if "prompt" in cell_rows.column_names
        else None
    )
    view = cell_view(ledger, storage, report, prices, prompts)
    eligible = max(report.eligible, cell_rows.num_rows)
    unaccounted = unaccounted_ids(cell_rows, ledger.table) if cell_rows.num_rows else []
    checks = [
        *run_checks(result, ledger, storage, require_c2pa=require_c2pa),
        failure_rate(view.state, eligible, thresholds),
        prompts_resolved(view.state, unaccounted),
        usable_images(view.state.cell, ledger.table),
        run_failure_rate(view.state.cell, view.delta, view.failed_this_run, view.state.cost_unit, thresholds),
    ]
    return CellReview(view=view, checks=checks)


def review_stored_cell(
    storage: Storage,
    provider: str,
    resolution: Resolution,
    cell_rows: pa.Table,
    prices: PriceTable,
    thresholds: FailureThresholds,
    *,
    names: Collection[str] = STORED_CHECKS,
) -> list[CheckOutcome]:
    """The checks of ``STORED_CHECKS`` that are in ``names``, judged from what is stored alone: one read of
    the cell's ledger, its stored images, its eligible rows (``cell_rows``, as for ``review_cell``). No engine
    run, no provider call, nothing written. ``images_valid`` re-reads every stored image of the cell (a C2PA
    manifest is validated where present; whether one must be there is judged by the run that stored it)."""
    ledger = read_cell_ledger(storage, provider, resolution, run_id="")  # no run: no row is "this run's"
    table = ledger.table
    state = cell_state(table, provider, Resolution(resolution), prices)
    cell, eligible = state.cell, cell_rows.num_rows
    judges = {  # only the named ones run: images_valid reads every stored image
        "all_rows_accounted": lambda: check_accounting(ledger_eligible(cell_rows, table), table).for_cell(cell),
        "images_valid": lambda: check_stored_images(table, storage).for_cell(cell),
        "failure_rate": lambda: failure_rate(state, eligible, thresholds),
        "prompts_resolved": lambda: prompts_resolved(state, unaccounted_ids(cell_rows, table) if eligible else []),
        "usable_images": lambda: usable_images(cell, table),
    }
    return [judges[name]() for name in STORED_CHECKS if name in names]
