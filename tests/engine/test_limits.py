"""Stopping early without losing anything: the run budget, an empty wallet, a refused API key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from nbpro_pipeline.costs.budget import BudgetGuard, BudgetLimits
from nbpro_pipeline.providers.registry import Provider
from tests.engine.conftest import price, prompt_rows


async def test_the_run_budget_is_never_exceeded(harness, provider):
    guard = BudgetGuard(BudgetLimits(max_per_run=3 * price(provider)))
    report = await harness.run(provider, prompt_rows(5), budget=guard)
    assert (report.submitted, report.succeeded, report.skipped) == (3, 3, 2)
    assert report.failures_by_reason == {"budget_exceeded": 2}
    assert report.stop_reason and "budget" in report.stop_reason
    skipped = [r for r in harness.rows() if r["status"] == "skipped"]
    assert len(skipped) == 2 and all(r["error_code"] == "budget_exceeded" and r["final_cost"] == 0 for r in skipped)
    assert all(r["task_id"] is None for r in skipped)
    assert guard.spent_run == 3 * price(provider) <= guard.limits.max_per_run and guard.reserved == 0
    assert harness.tasks_created(provider) == 3
    assert harness.sandbox_total(provider) == 3 * price(provider)
    harness.assert_reconciles(provider)


async def test_rivya_budget_of_24_credits_buys_exactly_three_images(harness):
    guard = BudgetGuard(BudgetLimits(max_per_run=Decimal(24)), unit="credits")
    report = await harness.run(Provider.RIVYA, prompt_rows(5), budget=guard)
    assert (report.submitted, report.skipped, report.final_cost) == (3, 2, Decimal(24))
    assert harness.sandbox_total(Provider.RIVYA) == 24


def leave_in_wallet(sandbox, provider: Provider, amount: Decimal) -> None:
    wallet = Decimal(str(sandbox.wallets()[provider.value]["balance"]))
    sandbox.topup(provider.value, float(amount - wallet))
    assert Decimal(str(sandbox.wallets()[provider.value]["balance"])) == amount


async def test_an_empty_wallet_stops_submitting_and_loses_nothing(harness, provider):
    leave_in_wallet(harness.sandbox, provider, 2 * price(provider))
    rows = prompt_rows(5)
    report = await harness.run(provider, rows, run_id="run-1")
    assert (report.succeeded, report.skipped, report.failed) == (2, 3, 0)
    assert report.failures_by_reason == {"insufficient_funds": 3}
    assert report.stop_reason and "http=402" in report.stop_reason
    assert report.accounted == report.eligible == 5
    assert {r["status"] for r in harness.rows() if r["error_code"] == "insufficient_funds"} == {"skipped"}
    assert harness.tasks_created(provider) == 2
    harness.assert_reconciles(provider)

    harness.sandbox.topup(provider.value, float(10 * price(provider)))
    again = await harness.run(provider, rows, run_id="run-2")
    assert (again.already_done, again.submitted, again.succeeded) == (2, 3, 3)
    harness.assert_reconciles(provider)


@pytest.mark.parametrize("mode", ["revoked", "not_allowed"])
async def test_a_refused_key_skips_every_row_and_says_why(harness, provider, mode):
    key = harness.keys[provider]
    auth = {"revoked_keys": [key]} if mode == "revoked" else {"allowed_keys": [key + "-other"]}
    harness.configure(provider, auth=auth)
    rows = prompt_rows(6)
    report = await harness.run(provider, rows, run_id="run-1")
    assert report.skipped == 6 and report.submitted == report.succeeded == report.failed == 0
    assert report.failures_by_reason == {"auth_failed": 6}
    assert report.stop_reason and "API key" in report.stop_reason
    assert key not in report.stop_reason  # the secret never reaches reports
    assert all(r["error_code"] == "auth_failed" and r["final_cost"] == 0 for r in harness.rows())
    assert all(key not in (r["error_message"] or "") for r in harness.rows())
    assert harness.tasks_created(provider) == 0 and harness.sandbox.ledger() == []

    harness.configure(provider, auth={"revoked_keys": [], "allowed_keys": None})
    again = await harness.run(provider, rows, run_id="run-2")
    assert again.succeeded == 6
    harness.assert_reconciles(provider)
