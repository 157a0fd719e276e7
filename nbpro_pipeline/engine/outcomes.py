"""How a prompt's attempt ends: one table from exception (or terminal snapshot) to outcome.

An outcome says the row's status and error code, what the provider has charged for the task in total
(the booking turns that into a net amount), and, through its code, whether the next run resumes the
task (polls it again) instead of submitting anew. Charges come from the provider's ``Billing`` rule,
never from which provider it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from nbpro_pipeline.engine.attempt import Attempt
from nbpro_pipeline.models.common import TaskState
from nbpro_pipeline.models.ledger import RESUMABLE_CODES, OutcomeStatus
from nbpro_pipeline.providers.base import Billing, Charge, TaskSnapshot
from nbpro_pipeline.providers.errors import (
    AnswerTooLargeError,
    AuthError,
    DeadlineExceededError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidRequestError,
    ProviderError,
    SubmitOutcomeUnknown,
    UnreadableResultError,
    UnsafeTaskIdError,
)

# Codes after which nothing more is submitted in this run: every further submit would fail alike.
STOP_CODES = frozenset({"insufficient_funds", "auth_failed", "budget_exceeded"})


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    code: str | None = None
    message: str | None = None
    charged: Decimal = Decimal(0)  # what the provider has charged for the task in total, so far
    stated: Decimal | None = None  # the provider's own figure for that total, when it gave a sane one
    anomaly: str | None = None  # a figure the provider gave that was not believed, and what was booked

    @classmethod
    def of(cls, status: OutcomeStatus, code: str | None, message: str | None, charge: Charge) -> Outcome:
        return cls(status, code, message, charge.amount, charge.stated, charge.anomaly)

    @property
    def resumable(self) -> bool:
        return self.code in RESUMABLE_CODES

    @property
    def stops_submitting(self) -> bool:
        return self.code in STOP_CODES


@dataclass(frozen=True)
class Charging:
    """The facts a charge rule reads: the provider's billing, this cell's price, and what earlier
    ledger rows already hold for the attempt's task."""

    billing: Billing
    price: Decimal
    earlier: Decimal = Decimal(0)


def _nothing(attempt: Attempt, exc: BaseException, c: Charging) -> Charge:
    return Charge(Decimal(0))


def _held(attempt: Attempt, exc: BaseException, c: Charging) -> Charge:
    return Charge(c.billing.held(c.price, c.earlier))


def _terminal_snapshot(attempt: Attempt, exc: BaseException, c: Charging) -> Charge:
    """The terminal snapshot the provider gave (an unreadable result carries its own): a finished,
    billable task is booked at its price even though its result could not be read."""
    snap = getattr(exc, "snapshot", None)
    snap = snap if isinstance(snap, TaskSnapshot) else attempt.snapshot
    return c.billing.charge(snap, c.price) if snap is not None else _held(attempt, exc, c)


def _after_deadline(attempt: Attempt, exc: BaseException, c: Charging) -> Charge:
    assert isinstance(exc, DeadlineExceededError)
    running = exc.last_state in (TaskState.RUNNING.value, TaskState.UNKNOWN.value)  # unknown may be running
    return Charge(c.billing.after_deadline(running, exc.cancel_status is not None, exc.billed, c.price, c.earlier))


def _so_far(attempt: Attempt, exc: BaseException, c: Charging) -> Charge:
    """An unexpected error: what the task holds as far as the attempt got (none before a submit)."""
    if attempt.task is None:
        return Charge(Decimal(0))
    return _terminal_snapshot(attempt, exc, c)


ChargeRule = Callable[[Attempt, BaseException, Charging], Charge]


@dataclass(frozen=True)
class Rule:
    error: type[BaseException]
    step: str | None  # "submit", "wait", "fetch"; None: any step
    status: OutcomeStatus
    code: str
    charge: ChargeRule


_F, _S = OutcomeStatus.FAILED, OutcomeStatus.SKIPPED

# First match wins: the more specific class before its base, a step-bound row before a step-free one.
OUTCOME_TABLE: tuple[Rule, ...] = (
    Rule(SubmitOutcomeUnknown, "submit", _F, "submit_outcome_unknown", _nothing),
    Rule(InsufficientFundsError, "submit", _S, "insufficient_funds", _nothing),
    Rule(AuthError, "submit", _S, "auth_failed", _nothing),
    Rule(IdempotencyConflictError, "submit", _F, "idempotency_conflict", _nothing),
    Rule(InvalidRequestError, "submit", _F, "invalid_request", _nothing),
    Rule(ProviderError, "submit", _F, "provider_error", _nothing),
    Rule(UnsafeTaskIdError, None, _F, "task_id_unsafe", _held),
    Rule(UnreadableResultError, None, _F, "result_unreadable", _terminal_snapshot),
    Rule(DeadlineExceededError, "wait", _F, "deadline_exceeded", _after_deadline),
    Rule(ProviderError, "wait", _F, "poll_failed", _held),
    Rule(AnswerTooLargeError, "fetch", _F, "result_too_large", _terminal_snapshot),
    Rule(ProviderError, "fetch", _F, "download_failed", _terminal_snapshot),
    Rule(Exception, None, _F, "internal_error", _so_far),
)

_STOP_PREFIX = {
    "insufficient_funds": "stopped after the provider reported too few credits: ",
    "auth_failed": "stopped after the provider refused the API key: ",
}


def stop_message(outcome: Outcome) -> str | None:
    """What the rows skipped after ``outcome`` say, when it stops submitting."""
    prefix = _STOP_PREFIX.get(outcome.code or "")
    return None if prefix is None else prefix + (outcome.message or "")


def outcome_for_error(exc: BaseException, step: str, attempt: Attempt, charging: Charging) -> Outcome:
    """The outcome of ``exc`` raised at ``step`` of ``attempt``, from ``OUTCOME_TABLE``."""
    rule = next(r for r in OUTCOME_TABLE if isinstance(exc, r.error) and r.step in (None, step))
    code = rule.code
    if isinstance(exc, DeadlineExceededError) and exc.cancel_status is not None:
        code = "deadline_cancelled"  # cancelled at the provider: nothing left to resume
    message = str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
    return Outcome.of(rule.status, code, message, rule.charge(attempt, exc, charging))


def outcome_for_snapshot(snap: TaskSnapshot, charging: Charging) -> Outcome | None:
    """A terminal snapshot that already decides the outcome (the provider says the task failed), or
    None when the result is to be fetched and checked."""
    if snap.state is TaskState.FAILED:
        charge = charging.billing.charge(snap, charging.price)
        return Outcome.of(_F, snap.error_code or "generation_failed", snap.error_message, charge)
    return None
