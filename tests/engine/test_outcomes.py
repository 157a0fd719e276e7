"""The one table from exception / snapshot to outcome, with each provider's billing rule."""

from __future__ import annotations

from decimal import Decimal

import pytest

from nbpro_pipeline.engine.attempt import Attempt, TaskRef
from nbpro_pipeline.engine.outcomes import RESUMABLE_CODES, Charging, outcome_for_error, outcome_for_snapshot
from nbpro_pipeline.models.common import TaskState
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.providers.base import TaskSnapshot
from nbpro_pipeline.providers.errors import (
    AuthError,
    DeadlineExceededError,
    InsufficientFundsError,
    ProviderError,
    SubmitOutcomeUnknown,
    UnreadableResultError,
)
from nbpro_pipeline.providers.odirouter import TRAITS as ODIROUTER_TRAITS
from nbpro_pipeline.providers.rivya import TRAITS as RIVYA_TRAITS
from tests.engine.conftest import prompt_row

RIVYA = Charging(RIVYA_TRAITS.billing, Decimal(8))
ODI = Charging(ODIROUTER_TRAITS.billing, Decimal("0.15"))


def attempt(task: bool = True) -> Attempt:
    row = prompt_row("p1")
    a = Attempt(row=row, request=GenerationRequest(prompt=row.prompt), fingerprint="f" * 64)
    a.task = TaskRef(task_id="t1") if task else None
    return a


def snap(state: TaskState, **kw) -> TaskSnapshot:
    return TaskSnapshot(provider="x", task_id="t1", state=state, **kw)


def unreadable(snapshot: TaskSnapshot | None) -> UnreadableResultError:
    return UnreadableResultError("odd body", provider="x", task_id="t1", raw_body=b"{}", snapshot=snapshot, polls=4)


@pytest.mark.parametrize(
    ("charging", "snapshot", "charged"),
    [
        (ODI, snap(TaskState.SUCCEEDED), Decimal("0.15")),  # finished and billable: the table price
        (RIVYA, snap(TaskState.SUCCEEDED, stated_cost=Decimal(6)), Decimal(6)),  # its own credits
        (RIVYA, snap(TaskState.SUCCEEDED), Decimal(8)),  # nothing stated: the list price
        (ODI, None, Decimal("0.15")),  # no terminal snapshot: an accepted task holds its list price
        (RIVYA, None, Decimal(8)),
    ],
)
def test_an_unreadable_result_is_booked_by_the_billing_rule_and_resumable(charging, snapshot, charged):
    for step in ("wait", "fetch", "any"):
        out = outcome_for_error(unreadable(snapshot), step, attempt(), charging)
        assert (out.status, out.code, out.charged) == (OutcomeStatus.FAILED, "result_unreadable", charged)
        assert out.resumable


@pytest.mark.parametrize(
    ("exc", "status", "code", "stops"),
    [
        (SubmitOutcomeUnknown("lost", provider="x"), OutcomeStatus.FAILED, "submit_outcome_unknown", False),
        (InsufficientFundsError("broke", provider="x"), OutcomeStatus.SKIPPED, "insufficient_funds", True),
        (AuthError("no", provider="x"), OutcomeStatus.SKIPPED, "auth_failed", True),
        (ProviderError("500", provider="x"), OutcomeStatus.FAILED, "provider_error", False),
    ],
)
def test_submit_errors_charge_nothing(exc, status, code, stops):
    out = outcome_for_error(exc, "submit", attempt(task=False), RIVYA)
    assert (out.status, out.code, out.charged, out.stops_submitting) == (status, code, 0, stops)


def test_a_failed_poll_keeps_what_the_task_holds():
    exc = ProviderError("502", provider="x")
    assert outcome_for_error(exc, "wait", attempt(), RIVYA).charged == 8  # the reservation
    earlier = Charging(ODI.billing, ODI.price, earlier=Decimal("0.15"))
    out = outcome_for_error(exc, "wait", attempt(), earlier)
    assert (out.code, out.charged) == ("poll_failed", Decimal("0.15"))  # no refund the provider never made


def test_deadlines_follow_cancel_and_billing():
    def deadline(**kw):
        return DeadlineExceededError("late", provider="x", task_id="t1", **kw)

    running_cancelled = deadline(cancel_status="CANCELLATION_REQUESTED", last_state="running")
    out = outcome_for_error(running_cancelled, "wait", attempt(), ODI)
    assert (out.code, out.charged, out.resumable) == ("deadline_cancelled", Decimal("0.15"), False)
    queued = deadline(cancel_status="CANCELLATION_REQUESTED", last_state="queued")
    assert outcome_for_error(queued, "wait", attempt(), ODI).charged == 0
    told = deadline(cancel_status="CANCELLATION_REQUESTED", last_state="queued", billed=True)
    assert outcome_for_error(told, "wait", attempt(), ODI).charged == Decimal("0.15")  # the provider's word
    alive = outcome_for_error(deadline(last_state="running"), "wait", attempt(), RIVYA)
    assert (alive.code, alive.charged, alive.resumable) == ("deadline_exceeded", 8, True)


def test_a_bug_is_charged_as_far_as_the_attempt_got():
    bug = RuntimeError("boom")
    assert outcome_for_error(bug, "any", attempt(task=False), RIVYA).charged == 0
    assert outcome_for_error(bug, "any", attempt(), RIVYA).charged == 8
    done = attempt()
    done.snapshot = snap(TaskState.SUCCEEDED)
    out = outcome_for_error(bug, "any", done, ODI)
    assert (out.code, out.charged, out.message) == ("internal_error", Decimal("0.15"), "RuntimeError: boom")
    assert "internal_error" in RESUMABLE_CODES


def test_a_failed_snapshot_decides_and_a_succeeded_one_does_not():
    failed = outcome_for_snapshot(snap(TaskState.FAILED, error_code="CONTENT_BLOCKED"), ODI)
    assert failed is not None and (failed.code, failed.charged) == ("CONTENT_BLOCKED", 0)
    refunded = outcome_for_snapshot(snap(TaskState.FAILED, stated_cost=Decimal(0)), RIVYA)
    assert refunded is not None and (refunded.code, refunded.charged) == ("generation_failed", 0)
    silent = outcome_for_snapshot(snap(TaskState.FAILED), RIVYA)  # refunded by the documented rule
    assert silent is not None and silent.charged == 0


@pytest.mark.parametrize(
    ("stated", "booked", "flagged"),
    [
        (Decimal(6), Decimal(6), False),
        (Decimal(0), Decimal(0), False),
        (Decimal(80), Decimal(80), False),  # ten list prices: odd, but within what is believed
        (Decimal(10) ** 12, Decimal(8), True),
        (Decimal(-1000), Decimal(8), True),
    ],
)
def test_a_stated_amount_is_believed_only_within_range(stated, booked, flagged):
    out = outcome_for_error(unreadable(snap(TaskState.SUCCEEDED, stated_cost=stated)), "wait", attempt(), RIVYA)
    assert out.charged == booked and (out.anomaly is not None) == flagged
    assert out.stated == (None if flagged else stated)


def test_a_failed_poll_of_an_unknown_task_holds_its_list_price_on_any_provider():
    exc = ProviderError("404", provider="x")
    assert outcome_for_error(exc, "wait", attempt(), ODI).charged == Decimal("0.15")
    assert outcome_for_snapshot(snap(TaskState.SUCCEEDED), ODI) is None
