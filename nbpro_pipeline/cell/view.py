"""Everything a ``generated_images`` materialization shows of its cell, from the cell's ledger after the
engine has run: the cell's state and this run's delta as plottable numbers, the failed prompts (one log
line each), the contact sheet and the gallery page.

Read from the ledger rather than hooked into the engine, so it is the same truth whoever wrote the rows.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from nbpro_pipeline.cell.checks import failed_prompts_markdown
from nbpro_pipeline.cell.ledger import CellLedger
from nbpro_pipeline.cell.state import (
    CellState,
    FailedPrompt,
    RunDelta,
    cell_state,
    native_round,
    run_delta,
    run_failures,
    usd_round,
)
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.engine.report import CellReport
from nbpro_pipeline.presentation.contact_sheet import contact_sheet
from nbpro_pipeline.presentation.gallery import GalleryPage, write_cell_gallery
from nbpro_pipeline.presentation.thumbnails import thumbnail_opener
from nbpro_pipeline.storage.filesystem import Storage


class CellView(BaseModel):
    state: CellState
    delta: RunDelta
    failed_this_run: list[FailedPrompt]
    numbers: dict[str, int | float | str | bool]  # plain metadata: numbers plot, strings label
    markdown: dict[str, str]
    gallery: GalleryPage

    def warning_lines(self) -> list[str]:
        """One line per prompt this run failed or skipped: cell, id, code, message."""
        return [
            f"{self.state.cell}: prompt {f.prompt_id} {f.status.value}: {f.error_code}: {f.message or 'no message'}"
            + (f" (image quarantined at {f.quarantined_uri})" if f.quarantined_uri else "")
            for f in self.failed_this_run
        ]


def _numbers(state: CellState, delta: RunDelta, report: CellReport) -> dict[str, int | float | str | bool]:
    credits = state.cost_unit == "credits"
    numbers: dict[str, int | float | str | bool] = {
        "cell": state.cell,
        "run_kind": "no-op" if delta.is_noop else "generated",
        "run_summary": delta.describe(report.eligible),
        # the cell's state
        "images_total": state.images_total,
        "failures_outstanding": state.failures_outstanding,
        "skipped_outstanding": state.skipped_outstanding,
        "quarantined_total": len(state.quarantined),
        "cost_usd_total": usd_round(state.cost_usd_total),
        "cost_usd_per_image": usd_round(state.cost_usd_total / state.images_total) if state.images_total else 0.0,
        # this run
        "images": delta.images,
        "failed": delta.failed,
        "skipped": delta.skipped,
        "already_done": delta.already_done,
        "eligible": report.eligible,
        "resumed": delta.resumed,
        "cost_usd": usd_round(delta.cost_usd),
        "cost_usd_basis": state.usd_basis,
        "cost_usd_is_estimate": state.usd_is_estimate,
    }
    if credits:
        numbers["cost_credits_total"] = native_round(state.cost_total, "credits")
        numbers["cost_credits"] = native_round(delta.cost, "credits")
    return numbers


def cell_view(
    ledger: CellLedger,
    storage: Storage,
    report: CellReport,
    prices: PriceTable,
    prompts: Mapping[str, str] | None = None,
) -> CellView:
    """The view of one cell after a run, from its ledger (``read_cell_ledger``); writes its gallery page,
    captioned with the prompts' text (``prompts``: id -> text)."""
    state = cell_state(ledger.table, report.provider, report.resolution, prices)
    delta = run_delta(report, prices)
    gallery = write_cell_gallery(storage, state, prompts)
    sheet = contact_sheet(state.images, state.quarantined, open_file=thumbnail_opener(storage))
    run_rows = ledger.run_rows
    return CellView(
        state=state,
        delta=delta,
        failed_this_run=run_failures(run_rows, ledger.run_id) if run_rows.num_rows else [],
        numbers=_numbers(state, delta, report),
        markdown={"contact_sheet": sheet, "failed_prompts": failed_prompts_markdown(state)},
        gallery=gallery,
    )
