import asyncio
import random
import threading
from decimal import Decimal

import pytest

from nbpro_pipeline.costs.budget import BudgetGuard, BudgetLimits

D = Decimal


def test_no_limits_grants_everything():
    guard = BudgetGuard(BudgetLimits())
    assert all(guard.try_reserve(8) for _ in range(1000))
    assert guard.reserved == 8000
    assert guard.remaining_run is None and guard.remaining_day is None
    assert guard.exhausted_reason is None


def test_refuses_before_the_run_limit_would_be_exceeded():
    guard = BudgetGuard(BudgetLimits(max_per_run=D(20)), unit="credits")
    assert guard.try_reserve(8)
    assert guard.try_reserve(8)
    assert not guard.try_reserve(8)  # 24 > 20: refused although 4 credits are left
    assert guard.reserved == 16
    assert guard.remaining_run == 4
    assert guard.refusals == 1
    assert "run budget of 20 credits would be exceeded" in guard.exhausted_reason
    assert guard.try_reserve(4)  # exactly reaching the limit is allowed
    assert guard.remaining_run == 0
    assert guard.exhausted_reason is not None and "used up" in guard.exhausted_reason


def test_reservations_count_until_settled_or_released():
    guard = BudgetGuard(BudgetLimits(max_per_run=D("0.45")))
    assert guard.try_reserve(D("0.15")) and guard.try_reserve(D("0.15")) and guard.try_reserve(D("0.15"))
    assert not guard.try_reserve(D("0.15"))  # three in flight fill the budget
    guard.settle(D("0.15"), D("0.15"))  # succeeded: billed
    guard.settle(D("0.15"), D(0))  # failed: refunded
    guard.release(D("0.15"))  # never sent
    assert guard.spent_run == D("0.15") and guard.reserved == 0
    assert guard.remaining_run == D("0.30")
    assert guard.exhausted_reason is not None  # the last call was a refusal...
    assert guard.try_reserve(D("0.15"))
    assert guard.exhausted_reason is None  # ...until a reservation is granted again


def test_daily_limit_counts_what_the_ledger_already_shows():
    guard = BudgetGuard(BudgetLimits(max_per_run=D(100), max_per_day=D(40)), spent_today=D(24), unit="credits")
    assert guard.remaining_day == 16
    assert guard.try_reserve(8) and guard.try_reserve(8)
    assert not guard.try_reserve(8)
    assert "daily budget of 40 credits" in guard.exhausted_reason
    guard.settle(8, 8)
    assert guard.spent_today == 32 and guard.spent_run == 8
    assert guard.remaining_day == 0 and guard.remaining_run == 84


def test_actual_above_reservation_is_recorded_and_blocks_further_spending():
    guard = BudgetGuard(BudgetLimits(max_per_run=D(10)))
    assert guard.try_reserve(8)
    guard.settle(8, 12)  # the provider charged more than reserved: the truth wins
    assert guard.spent_run == 12 and guard.remaining_run == 0
    assert not guard.try_reserve(1)


def test_a_refund_of_an_earlier_charge_lowers_what_the_run_spent():
    """A resumed Rivya task recorded at its 8-credit reservation that then fails is refunded: net -8."""
    guard = BudgetGuard(BudgetLimits(max_per_run=D(16)))
    assert guard.try_reserve(8) and guard.try_reserve(8)
    guard.settle(8, 8)
    guard.settle(8, 8)
    assert not guard.try_reserve(8)
    guard.settle(0, -8)
    assert guard.spent_run == 8 and guard.try_reserve(8)


def test_bad_amounts_are_rejected():
    guard = BudgetGuard(BudgetLimits(max_per_run=D(10)))
    with pytest.raises(ValueError):
        guard.try_reserve(-1)
    with pytest.raises(TypeError):
        guard.try_reserve(0.15)  # floats are not money
    with pytest.raises(ValueError, match="only 0 is reserved"):
        guard.release(8)
    assert guard.try_reserve(8)
    guard.settle(8, 8)
    with pytest.raises(ValueError):
        guard.settle(8, 8)  # settled twice
    with pytest.raises(ValueError):
        BudgetLimits(max_per_run=D(-1))


async def test_concurrent_reservations_never_overshoot():
    guard = BudgetGuard(BudgetLimits(max_per_run=D("1.50")))
    rng = random.Random(7)
    granted: list[bool] = []

    async def request(i: int) -> None:
        await asyncio.sleep(rng.random() / 1000)
        if not guard.try_reserve(D("0.15")):
            granted.append(False)
            return
        granted.append(True)
        assert guard.spent_run + guard.reserved <= D("1.50")
        await asyncio.sleep(rng.random() / 1000)
        guard.settle(D("0.15"), D("0.15"))

    await asyncio.gather(*(request(i) for i in range(40)))
    assert granted.count(True) == 10
    assert guard.spent_run == D("1.50") and guard.reserved == 0
    assert guard.refusals == 30


async def test_concurrent_failures_free_room_for_later_requests():
    guard = BudgetGuard(BudgetLimits(max_per_run=D(16)))
    outcomes = []

    async def request(i: int) -> None:
        if not guard.try_reserve(8):
            outcomes.append("refused")
            return
        await asyncio.sleep(0)
        guard.settle(8, 0 if i % 2 else 8)  # odd requests fail and are refunded
        outcomes.append("settled")

    for batch in range(4):
        await asyncio.gather(*(request(batch * 4 + i) for i in range(4)))
    assert guard.spent_run <= 16
    assert guard.reserved == 0


def test_thread_safety():
    guard = BudgetGuard(BudgetLimits(max_per_run=D(800)))
    granted = []

    def worker() -> None:
        for _ in range(50):
            granted.append(guard.try_reserve(8))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 100
    assert guard.reserved == 800
