"""review_cell: what generated_images shows and checks after a run, from one read of the cell's ledger;
review_stored_cell: the checks judged from storage alone, with no run."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from nbpro_pipeline.cell import ledger as cell_ledger
from nbpro_pipeline.cell.checks import FailureThresholds
from nbpro_pipeline.cell.review import RUN_ONLY_CHECKS, STORED_CHECKS, review_cell, review_stored_cell
from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.models.check import Severity
from tests.engine.conftest import R1K, prompt_row, prompt_rows

ASSET_CHECKS = [
    "all_rows_accounted", "images_valid", "ledger_reconciles", "failure_rate", "prompts_resolved", "usable_images",
    "run_failure_rate",
]  # fmt: skip


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


def _requests(sandbox) -> dict:
    """Every answer the sandbox gave, per provider: any call (create, poll, download) changes it."""
    stats = sandbox.stats()
    return {p: (stats[p]["responses"], stats[p]["status_polls"], stats[p]["downloads"]) for p in ("rivya", "odirouter")}


def _files(root) -> dict:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


async def test_a_stored_cell_is_judged_from_its_ledger_alone_by_the_thresholds_given(harness, provider):
    """No run: a cell with one failed and one never-run prompt, judged twice with other thresholds; the
    sandbox sees no call and nothing in storage changes."""
    done, failing, never_run = prompt_rows(3), prompt_row("fails"), prompt_row("never")
    await harness.run(provider, done)
    harness.configure(provider, faults={"task_failed": {"INFERENCE_FAILURE": 1.0}})
    await harness.run(provider, [failing], run_id="run-2")
    before, files = _requests(harness.sandbox), _files(Path(harness.storage.root))
    cell_rows = _cell_rows([*done, failing, never_run])

    def judge(**thresholds) -> dict:
        checks = review_stored_cell(
            harness.storage, provider.value, R1K, cell_rows, PriceTable(), FailureThresholds(**thresholds)
        )
        return {c.name: c for c in checks}

    lenient, strict = judge(warn_above=0.1, error_above=0.5), judge(warn_above=0.1, error_above=0.15)
    assert list(lenient) == list(STORED_CHECKS)
    assert _requests(harness.sandbox) == before and _files(Path(harness.storage.root)) == files
    cell = f"{provider.value}|1K"
    assert all(c.description.startswith(f"{cell}: ") for c in lenient.values())
    assert lenient["images_valid"].passed and lenient["images_valid"].metadata["checked"] == 3
    assert lenient["usable_images"].passed
    accounted = lenient["all_rows_accounted"]
    assert not accounted.passed and accounted.metadata["missing"] == 1 and accounted.metadata["eligible"] == 5
    resolved = lenient["prompts_resolved"]
    assert not resolved.passed and resolved.severity is Severity.ERROR and "never" in resolved.description
    rate = lenient["failure_rate"]  # 1 of 5 without an image: 20%, above the warn threshold only
    assert not rate.passed and rate.severity is Severity.WARN and rate.metadata["failure_rate"] == 0.2
    assert not strict["failure_rate"].passed and strict["failure_rate"].severity is Severity.ERROR
    assert judge(warn_above=0.25, error_above=0.5)["failure_rate"].passed


async def test_a_stored_review_runs_only_the_checks_named(harness, provider):
    rows = prompt_rows(2)
    await harness.run(provider, rows)
    only = review_stored_cell(
        harness.storage, provider.value, R1K, _cell_rows(rows), PriceTable(), FailureThresholds(),
        names={"failure_rate", "run_failure_rate"},
    )  # fmt: skip
    assert [c.name for c in only] == ["failure_rate"] and only[0].passed
    assert not set(RUN_ONLY_CHECKS) & set(STORED_CHECKS) and set(RUN_ONLY_CHECKS) | set(STORED_CHECKS) == set(
        ASSET_CHECKS
    )
