"""A progress line every few seconds: done/total, money so far, rate and ETA.

The first line comes as soon as the first results are in (a second after the first one, so a burst of
concurrent tasks finishing together counts), never as "ETA ?" after a whole interval of waiting. The
rate is taken over the last ``WINDOW_S`` seconds of completions once there are that many, so the ETA
follows the run's current pace instead of an average dragged down by the first task's latency.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 30.0
FIRST_LINE_GRACE_S = 1.0


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    def __init__(self, label: str, total: int, emit: Callable[[str], None], describe_cost: Callable[[], str]) -> None:
        self.label = label
        self.total = total
        self._done = 0
        self._completions: deque[tuple[float, int]] = deque()  # (monotonic time, done) samples
        self.first_done_at: float | None = None
        self.ok = 0
        self.failed = 0
        self.emit = emit
        self.describe_cost = describe_cost
        self.started = time.monotonic()

    @property
    def done(self) -> int:
        return self._done

    @done.setter
    def done(self, value: int) -> None:
        now = time.monotonic()
        if self.first_done_at is None and value > 0:
            self.first_done_at = now
        self._done = value
        self._completions.append((now, value))
        while self._completions and now - self._completions[0][0] > WINDOW_S:
            self._completions.popleft()

    def rate(self) -> float:
        """Rows per second: over the last ``WINDOW_S`` once the run is that old, else since the start."""
        now = time.monotonic()
        elapsed = now - self.started
        if elapsed > WINDOW_S and len(self._completions) >= 2:
            t0, d0 = self._completions[0]
            window = max(now - t0, 1e-9)
            return (self._done - d0) / window
        return self._done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rate = self.rate()
        remaining = self.total - self.done
        eta = format_duration(remaining / rate) if rate > 0 and remaining else ("0s" if not remaining else "?")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{self.label}: {self.done}/{self.total} ({pct:.0f}%) done, {self.ok} ok, {self.failed} failed; "
            f"{self.describe_cost()} so far; {rate:.2f} rows/s; ETA {eta}"
        )

    async def every(self, interval_s: float) -> None:
        """Emit a line every ``interval_s``, the first one as soon as results are coming in."""
        first_at = time.monotonic() + interval_s
        while time.monotonic() < first_at:
            if self.first_done_at is not None and time.monotonic() - self.first_done_at >= FIRST_LINE_GRACE_S:
                break
            await asyncio.sleep(min(0.25, interval_s))
        while True:
            self.emit(self.line())
            await asyncio.sleep(interval_s)
