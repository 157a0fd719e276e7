"""A token bucket shared by every request a client makes, so one cell never outruns a provider's quota.

Clients already slow down on a 429 (a client-wide pause honouring ``Retry-After``); the bucket keeps
the steady rate under the quota so 429s stay the exception rather than the feedback loop.
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``acquire`` waits for one token.

    Waiters are served in arrival order (one lock), so a burst of coroutines cannot starve each other.
    """

    def __init__(self, rate: float, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (requests per second)")
        self.rate = float(rate)
        self.burst = max(1, int(burst if burst is not None else max(1, round(rate))))
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()
        self.waited_s = 0.0  # total time callers spent waiting: shows when the limit is the bottleneck

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                delay = (1 - self._tokens) / self.rate
                self.waited_s += delay
                await asyncio.sleep(delay)
                self._refill()
            self._tokens -= 1
