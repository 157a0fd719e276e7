"""A spending guard for one run of one provider: reserve before submitting, settle when the outcome is known.

Amounts are in the provider's unit (credits or USD) and are ``Decimal`` throughout.
A reservation is granted only if it keeps ``spent + reserved + amount`` within every limit, so the guard
refuses *before* a limit would be exceeded, counting requests that are in flight but not yet settled.
Nothing here awaits, so within one asyncio event loop every call is atomic; a lock also makes the guard
safe to share between threads.

The daily limit counts what the ledger already shows for the UTC day (``spent_today``, see
``storage.spent_on``) plus what this run spends. Two runs of the same provider at the same time do
not see each other's reservations: the run queue's one-run-per-provider tag limit is what keeps the daily
limit exact.
"""

from __future__ import annotations

import threading
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

Amount = Decimal | int | str

_ZERO = Decimal(0)


def _amount(value: Amount, what: str, *, refund_ok: bool = False) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"{what} must be a Decimal, int or str, not a float (floats are not exact money)")
    amount = Decimal(value)
    if not amount.is_finite() or (amount < 0 and not refund_ok):
        raise ValueError(f"{what} must be a finite amount >= 0, got {value!r}")
    return amount


class BudgetLimits(BaseModel):
    """Spending limits in the provider's unit; ``None`` means no limit."""

    model_config = ConfigDict(frozen=True)

    max_per_run: Decimal | None = Field(default=None, ge=0)
    max_per_day: Decimal | None = Field(default=None, ge=0)


class BudgetGuard:
    """Reserve, settle, release; see the module docstring. One guard per (run, provider)."""

    def __init__(self, limits: BudgetLimits, *, spent_today: Amount = _ZERO, unit: str = "") -> None:
        self.limits = limits
        self.unit = unit
        self._spent_today = _amount(spent_today, "spent_today")
        self._spent_run = _ZERO
        self._reserved = _ZERO
        self._refused_reason: str | None = None
        self._refusals = 0
        self._lock = threading.Lock()

    # -- state ---------------------------------------------------------------------------------------
    @property
    def spent_run(self) -> Decimal:
        """Settled spending of this run."""
        return self._spent_run

    @property
    def reserved(self) -> Decimal:
        """Reserved for requests in flight, not yet settled or released."""
        return self._reserved

    @property
    def spent_today(self) -> Decimal:
        """Spent today before this run (from the ledger) plus this run's settled spending."""
        return self._spent_today + self._spent_run

    @property
    def remaining_run(self) -> Decimal | None:
        """What can still be reserved under the run limit (never negative); ``None`` without a limit."""
        if self.limits.max_per_run is None:
            return None
        return max(_ZERO, self.limits.max_per_run - self._spent_run - self._reserved)

    @property
    def remaining_day(self) -> Decimal | None:
        """What can still be reserved under the daily limit (never negative); ``None`` without a limit."""
        if self.limits.max_per_day is None:
            return None
        return max(_ZERO, self.limits.max_per_day - self.spent_today - self._reserved)

    @property
    def refusals(self) -> int:
        """How many ``try_reserve`` calls were refused."""
        return self._refusals

    @property
    def exhausted_reason(self) -> str | None:
        """Why the guard refuses, or ``None`` while it still grants reservations.

        The reason of the last refusal while no reservation was granted after it; otherwise a message
        when a limit has nothing left at all (even a zero amount would then still be granted).
        """
        with self._lock:
            if self._refused_reason is not None:
                return self._refused_reason
            if self.remaining_run == 0:
                return self._describe("run", self.limits.max_per_run, self._spent_run, None)
            if self.remaining_day == 0:
                return self._describe("daily", self.limits.max_per_day, self.spent_today, None)
            return None

    # -- operations ----------------------------------------------------------------------------------
    def try_reserve(self, amount: Amount) -> bool:
        """Reserve ``amount`` if spent + reserved + amount stays within every limit; False (and nothing
        reserved) otherwise."""
        amount = _amount(amount, "amount")
        with self._lock:
            run_limit, day_limit = self.limits.max_per_run, self.limits.max_per_day
            reason = None
            if run_limit is not None and self._spent_run + self._reserved + amount > run_limit:
                reason = self._describe("run", run_limit, self._spent_run, amount)
            elif day_limit is not None and self.spent_today + self._reserved + amount > day_limit:
                reason = self._describe("daily", day_limit, self.spent_today, amount)
            if reason is not None:
                self._refused_reason = reason
                self._refusals += 1
                return False
            self._reserved += amount
            self._refused_reason = None
            return True

    def settle(self, reserved: Amount, actual: Amount) -> None:
        """The request behind a reservation of ``reserved`` finished and cost ``actual`` (0 if refunded;
        negative when a resumed task's earlier charge was refunded, which lowers what the run spent)."""
        reserved, actual = _amount(reserved, "reserved"), _amount(actual, "actual", refund_ok=True)
        with self._lock:
            self._take_back(reserved)
            self._spent_run += actual

    def release(self, reserved: Amount) -> None:
        """Give a reservation back unused: the request was never sent, or provably cost nothing."""
        reserved = _amount(reserved, "reserved")
        with self._lock:
            self._take_back(reserved)

    def _take_back(self, reserved: Decimal) -> None:
        if reserved > self._reserved:
            raise ValueError(f"cannot give back {reserved}: only {self._reserved} is reserved (settled twice?)")
        self._reserved -= reserved

    def _describe(self, which: str, limit: Decimal | None, spent: Decimal, amount: Decimal | None) -> str:
        unit = f" {self.unit}" if self.unit else ""
        asked = f" + {amount} requested" if amount is not None else ""
        return (
            f"{which} budget of {limit}{unit} would be exceeded: spent {spent} + reserved {self._reserved}{asked}"
            if amount is not None
            else f"{which} budget of {limit}{unit} is used up: spent {spent} + reserved {self._reserved}"
        )

    def __repr__(self) -> str:
        return (
            f"BudgetGuard(limits={self.limits!r}, spent_today={self._spent_today}, "
            f"spent_run={self._spent_run}, reserved={self._reserved})"
        )
