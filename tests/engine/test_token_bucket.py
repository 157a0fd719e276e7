"""TokenBucket on a fake clock: the steady rate, the burst, arrival order; no wall-clock thresholds."""

from __future__ import annotations

import asyncio
import types

import pytest

from nbpro_pipeline.providers import ratelimit
from nbpro_pipeline.providers.ratelimit import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += max(0.0, delay)
        await asyncio.sleep(0)  # still yield to the loop, as a real sleep would


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    monkeypatch.setattr(ratelimit, "asyncio", types.SimpleNamespace(sleep=fake.sleep, Lock=asyncio.Lock))
    return fake


async def test_the_burst_is_free_then_the_rate_holds(clock):
    bucket = TokenBucket(rate=50, burst=5)
    start = clock.now
    for _ in range(30):
        await bucket.acquire()
    elapsed = clock.now - start
    assert elapsed == pytest.approx(25 / 50)  # 5 from the burst, 25 at 50 per second
    assert bucket.waited_s == pytest.approx(25 / 50)
    assert len(clock.sleeps) == 25 and all(s == pytest.approx(1 / 50) for s in clock.sleeps)


async def test_concurrent_callers_share_the_rate(clock):
    bucket = TokenBucket(rate=50, burst=5)
    order: list[int] = []

    async def call(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    start = clock.now
    await asyncio.gather(*(call(i) for i in range(30)))
    assert clock.now - start == pytest.approx(0.5)
    assert order == list(range(30))  # served in arrival order
    assert bucket.waited_s > 0


async def test_idle_time_refills_only_up_to_the_burst(clock):
    bucket = TokenBucket(rate=10, burst=3)
    for _ in range(3):
        await bucket.acquire()
    assert bucket.waited_s == 0
    clock.now += 3600  # an hour idle saves up 3 tokens, not 36000
    for _ in range(3):
        await bucket.acquire()
    assert bucket.waited_s == 0
    await bucket.acquire()
    assert bucket.waited_s == pytest.approx(0.1)


async def test_partial_refill_shortens_the_wait(clock):
    bucket = TokenBucket(rate=4, burst=1)
    await bucket.acquire()
    clock.now += 0.2  # 0.8 of a token back
    await bucket.acquire()
    assert clock.sleeps == [pytest.approx(0.05)]


def test_defaults_and_validation():
    assert TokenBucket(rate=20).burst == 20
    assert TokenBucket(rate=0.2).burst == 1
    assert TokenBucket(rate=5, burst=0).burst == 1
    for bad in (0, -1):
        with pytest.raises(ValueError, match="positive"):
            TokenBucket(rate=bad)
