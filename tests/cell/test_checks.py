"""Per-cell checks: named for their cell, judged on the cell's state, thresholds as configured."""

from decimal import Decimal

import pyarrow as pa
import pytest
from pydantic import ValidationError

from nbpro_pipeline.cell.checks import (
    FailureThresholds,
    failure_rate,
    prompts_resolved,
    run_failure_rate,
    unaccounted_ids,
)
from nbpro_pipeline.cell.state import FailedPrompt, RunDelta, cell_state
from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.models.check import Severity
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from tests.costs.builders import ledger, record


def _state(*records):
    records = [
        r.model_copy(update={"image_uri": r.image_uri or f"/img/{r.prompt_id}.png"}) if r.status == "succeeded" else r
        for r in records
    ]
    return cell_state(ledger(*records), Provider.RIVYA, Resolution.R1K, PriceTable())


def _cell(n_ok: int, n_failed: int):
    ok = [record(f"ok{i}", resolution="1K") for i in range(n_ok)]
    bad = [record(f"bad{i}", resolution="1K", status="failed", error_code="generation_failed") for i in range(n_failed)]
    return _state(*ok, *bad)


@pytest.mark.parametrize(
    ("failed", "passed", "severity"),
    [(0, True, Severity.WARN), (1, False, Severity.WARN), (3, False, Severity.ERROR)],
)
def test_failure_rate_warns_then_errors_above_its_thresholds(failed, passed, severity):
    state = _cell(10 - failed, failed)
    check = failure_rate(state, 10, FailureThresholds(warn_above=0.05, error_above=0.2))
    assert (check.passed, check.severity) == (passed, severity)
    assert check.description.startswith("rivya|1K: ")
    assert "{" not in check.description  # never a raw dict
    if failed:
        assert f"{failed} generation_failed" in check.description


def test_thresholds_must_be_ordered():
    with pytest.raises(ValidationError, match="below the warn threshold"):
        FailureThresholds(warn_above=0.5, error_above=0.1)


def test_prompts_resolved_names_quarantined_failed_and_unaccounted_prompts():
    state = _state(
        record("good", resolution="1K"),
        record("wrong", resolution="1K", status="failed", error_code="size_mismatch", image_uri="/q/w.png"),
        record("gone", resolution="1K", status="failed", error_code="generation_failed"),
    )
    check = prompts_resolved(state, ["lost"])
    assert not check.passed and check.severity is Severity.ERROR  # an unaccounted prompt is an error
    assert "1 unaccounted (no ledger row): `lost`" in check.description  # ids in code spans
    assert "1 quarantined" in check.description and "wrong" in check.description
    assert "gone" in check.description
    assert "| wrong | failed | size\\_mismatch |" in check.markdown["prompts"]
    known_only = prompts_resolved(state, [])
    assert not known_only.passed and known_only.severity is Severity.WARN


def test_unaccounted_ids_compares_id_and_prompt_hash():
    rows = pa.table({"prompt_id": ["a", "b"], "prompt_sha256": ["sha-a", "changed"]})
    assert unaccounted_ids(rows, ledger(record("a"), record("b"))) == ["b"]  # b's prompt text changed


def _delta(images: int, failed: int, already_done: int) -> RunDelta:
    return RunDelta(images=images, failed=failed, skipped=0, already_done=already_done, submitted=images + failed,
                    resumed=0, cost=Decimal(8 * (images + failed)), cost_usd=Decimal(0))  # fmt: skip


def _failed(n: int) -> list[FailedPrompt]:
    return [
        FailedPrompt(prompt_id=f"p{i}", status="failed", error_code="size_mismatch", message="", cost=Decimal(8),
                     quarantined_uri=f"/q/p{i}.png")
        for i in range(n)
    ]  # fmt: skip


def test_run_failure_rate_judges_this_runs_new_work_not_the_diluted_cell():
    """rivya|4K: 11 images from earlier runs, then a run with 3 new images and 3 wrong-size ones. The cell's
    rate is 3 of 17 (17.6%, a warning); the run's is 3 of 6 (50%), an error that names what was paid."""
    thresholds = FailureThresholds(warn_above=0.0, error_above=0.2)
    check = run_failure_rate("rivya|4K", _delta(3, 3, 11), _failed(3), "credits", thresholds)
    assert (check.passed, check.severity) == (False, Severity.ERROR)
    assert check.description == (
        "rivya|4K: this run: 3 of 6 new prompts without an image (50%, above 20%): 3 size_mismatch; "
        "24 credits paid for them"
    )
    assert check.metadata["run_failure_rate"] == 0.5 and check.metadata["paid_for_failures_credits"] == 24.0
    cell = failure_rate(_cell(14, 3), 17, thresholds)
    assert cell.severity is Severity.WARN  # the cell's own view stays what it is


def test_run_failure_rate_passes_a_clean_run_and_a_no_op():
    thresholds = FailureThresholds()
    clean = run_failure_rate("rivya|4K", _delta(6, 0, 11), [], "credits", thresholds)
    noop = run_failure_rate("rivya|4K", _delta(0, 0, 17), [], "credits", thresholds)
    assert clean.passed and noop.passed
    assert noop.description == "rivya|4K: this run had no new work (17 prompts already done)"
    one = run_failure_rate("rivya|4K", _delta(9, 1, 0), _failed(1), "credits", thresholds)
    assert (one.passed, one.severity) == (False, Severity.WARN)  # 10%: a warning, the run stays green
