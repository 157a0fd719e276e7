"""A cell's state is what the ledger holds now, whatever the last run did."""

from datetime import timedelta
from decimal import Decimal

from nbpro_pipeline.cell.state import cell_state, run_failures
from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from tests.costs.builders import T0, ledger, record

RIVYA_2K = (Provider.RIVYA, Resolution.R2K)


def test_state_counts_latest_outcomes_and_every_credit():
    rows = ledger(
        record("a"),
        record("b", status="failed", error_code="generation_failed", error_message="boom"),
        record("b", at=T0 + timedelta(hours=1)),  # b's re-run succeeded: no longer outstanding
        record("c", status="failed", error_code="size_mismatch", cost=8, image_uri="/q/c.png", width=10, height=20),
        record("d", status="skipped", error_code="budget_exceeded"),
    )
    state = cell_state(rows, *RIVYA_2K, PriceTable())
    assert state.images_total == 2
    assert [f.prompt_id for f in state.outstanding] == ["c", "d"]
    assert state.failures_outstanding == 1 and state.skipped_outstanding == 1
    assert state.cost_total == Decimal(24)  # a, b's success and c's quarantined image: every credit spent
    assert state.cost_usd_total == Decimal(24) * PriceTable().to_usd("rivya", Decimal(1))
    assert [q.prompt_id for q in state.quarantined] == ["c"] and state.quarantined[0].width == 10
    assert state.outstanding[0].quarantined_uri == "/q/c.png"
    assert "0.0168 USD/credit" in state.usd_basis


def test_run_failures_are_only_this_runs_rows():
    mine = record("x", status="failed", error_code="generation_failed", error_message="INFERENCE_FAILURE", run_id="r1")
    other = record("y", status="failed", error_code="generation_failed", run_id="r0")
    failures = run_failures(ledger(mine, other, record("z", run_id="r1")), "r1")
    assert [(f.prompt_id, f.error_code, f.message) for f in failures] == [
        ("x", "generation_failed", "INFERENCE_FAILURE")
    ]
