"""review_cell: what generated_images shows and checks after a run, from one read of the cell's ledger."""

from __future__ import annotations

import pyarrow as pa

from nbpro_pipeline.cell import ledger as cell_ledger
from nbpro_pipeline.cell.checks import FailureThresholds
from nbpro_pipeline.cell.review import review_cell
from nbpro_pipeline.costs import PriceTable
from tests.engine.conftest import prompt_rows

ASSET_CHECKS = ["all_rows_accounted", "images_valid", "ledger_reconciles", "failure_rate", "prompts_resolved"]


def _cell_rows(rows) -> pa.Table:
    return pa.table({"prompt_id": [r.prompt_id for r in rows], "prompt_sha256": [r.prompt_sha256 for r in rows]})


async def test_a_review_reads_the_cell_ledger_once_and_names_every_check_for_its_cell(harness, provider, monkeypatch):
    rows = prompt_rows(4)
    await harness.run(provider, rows)
    reads: list[tuple] = []
    real = cell_ledger.read_ledger
    monkeypatch.setattr(cell_ledger, "read_ledger", lambda *a, **kw: reads.append((a, kw)) or real(*a, **kw))
    review = review_cell(harness.results[-1], harness.storage, _cell_rows(rows), PriceTable(), FailureThresholds())
    assert len(reads) == 1
    assert [c.name for c in review.checks] == ASSET_CHECKS
    cell = f"{provider.value}|1K"
    assert all(c.passed and c.description.startswith(f"{cell}: ") and c.metadata["cell"] == cell for c in review.checks)
    assert review.view.state.images_total == 4 and review.view.numbers["images"] == 4
    assert review.view.failed_this_run == [] and review.view.warning_lines() == []
