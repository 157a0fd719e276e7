"""The run's checks as the asset gets them (``run_checks`` over one read of the cell's ledger), by name."""

from __future__ import annotations

from nbpro_pipeline.cell.checks import run_checks
from nbpro_pipeline.cell.ledger import read_cell_ledger
from nbpro_pipeline.engine.run import CellResult
from nbpro_pipeline.models.check import CheckOutcome
from nbpro_pipeline.storage.filesystem import Storage


def audit(result: CellResult, storage: Storage, *, require_c2pa: bool = False) -> dict[str, CheckOutcome]:
    report = result.report
    ledger = read_cell_ledger(storage, report.provider, report.resolution, result.run_id)
    return {c.name: c for c in run_checks(result, ledger, storage, require_c2pa=require_c2pa)}
