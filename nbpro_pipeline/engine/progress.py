"""A progress line every few seconds: done/total, money so far, rate and ETA.

The first line comes as soon as the first results are in (a second after the first one, so a burst of
concurrent tasks finishing together counts), never as "ETA ?" after a whole interval of waiting. The
rate is taken over the last ``WINDOW_S`` seconds once the run is that old, so the ETA follows the run's
current pace instead of an average dragged down by the first task's latency.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from nbpro_pipeline.engine.report import CellReport

WINDOW_S = 30.0
FIRST_LINE_GRACE_S = 1.0
_POLL_S = 0.25


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
    """Reads its counts from the cell report (the one place they are kept) and prints a line."""

    def __init__(
        self, label: str, report: CellReport, emit: Callable[[str], None], describe_cost: Callable[[], str]
    ) -> None:
        self.label = label
        self.report = report
        self.emit = emit
        self.describe_cost = describe_cost
        self.started = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque()  # (monotonic time, rows accounted)

    def _sample(self) -> tuple[float, int]:
        now, done = time.monotonic(), self.report.accounted
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > WINDOW_S:
            self._samples.popleft()
        return now, done

    def rate(self) -> float:
        """Rows per second: over the last ``WINDOW_S`` once the run is that old, else since the start."""
        now, done = self._sample()
        elapsed = now - self.started
        t0, d0 = self._samples[0]
        if elapsed > WINDOW_S and now - t0 > 1.0:
            return (done - d0) / (now - t0)
        return done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        rep = self.report
        rate = self.rate()
        done, total = rep.accounted, rep.eligible
        remaining = total - done
        eta = format_duration(remaining / rate) if rate > 0 and remaining else ("0s" if not remaining else "?")
        pct = 100.0 * done / total if total else 100.0
        return (
            f"{self.label}: {done}/{total} ({pct:.0f}%) done, {rep.succeeded} ok, {rep.failed} failed; "
            f"{self.describe_cost()} so far; {rate:.2f} rows/s; ETA {eta}"
        )

    async def every(self, interval_s: float) -> None:
        """Emit a line every ``interval_s``, the first one as soon as results are coming in."""
        first_at = time.monotonic() + interval_s
        first_done_at: float | None = None
        while (now := time.monotonic()) < first_at:
            if self.report.accounted > 0:
                first_done_at = first_done_at or now
                if now - first_done_at >= FIRST_LINE_GRACE_S:
                    break
            self._sample()
            await asyncio.sleep(min(_POLL_S, interval_s))
        while True:
            self.emit(self.line())
            await asyncio.sleep(interval_s)
