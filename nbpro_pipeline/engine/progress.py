"""A progress line every few seconds: done/total, money so far, rate and ETA."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from nbpro_pipeline.engine.report import CellReport


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

    def line(self) -> str:
        rep = self.report
        done, total = rep.accounted, rep.eligible
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = total - done
        eta = format_duration(remaining / rate) if rate > 0 and remaining else ("0s" if not remaining else "?")
        pct = 100.0 * done / total if total else 100.0
        return (
            f"{self.label}: {done}/{total} ({pct:.0f}%) done, {rep.succeeded} ok, {rep.failed} failed; "
            f"{self.describe_cost()} so far; {rate:.2f} rows/s; ETA {eta}"
        )

    async def every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.emit(self.line())
