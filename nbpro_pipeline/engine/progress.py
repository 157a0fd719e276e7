"""A progress line every few seconds over this run's new work: done/to do, money so far, rate and ETA.

Prompts already stored by earlier runs are skipped in an instant, so they are counted apart and never
enter the rate: counted in, they made a run that still had all its paid work ahead look nearly finished
(docs/ui.md, "Progress"). The first line comes as soon as the first new results are in (a second after
the first one, so a burst of concurrent tasks finishing together counts). The rate is taken over the last
``WINDOW_S`` seconds once the run is that old, so the ETA follows the run's current pace; a window with
no result falls back to the rate since the start rather than to "ETA ?".
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from pydantic import BaseModel

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


class ProgressSnapshot(BaseModel):
    """One progress reading, for a caller that shows it somewhere other than the log (a run tag)."""

    cell: str
    new_done: int  # this run's new work with an outcome: succeeded, failed or skipped
    new_total: int  # eligible prompts not already done (an upper bound while rows are still being read)
    already_done: int
    succeeded: int
    failed: int
    rate_per_s: float  # new outcomes per second
    eta_s: float | None  # None: no new outcome yet, so no rate to go by
    line: str

    @property
    def short(self) -> str:
        """``5/12 new, ETA 40s``: what fits in a run tag."""
        if self.new_done >= self.new_total:
            eta = "done"
        else:
            eta = "ETA ?" if self.eta_s is None else "ETA " + format_duration(self.eta_s)
        return f"{self.new_done}/{self.new_total} new, {self.failed} failed, {eta}"


class Progress:
    """Reads its counts from the cell report (the one place they are kept) and prints a line."""

    def __init__(
        self,
        label: str,
        report: CellReport,
        emit: Callable[[str], None],
        describe_cost: Callable[[], str],
        on_snapshot: Callable[[ProgressSnapshot], None] | None = None,
    ) -> None:
        self.label = label
        self.report = report
        self.emit = emit
        self.describe_cost = describe_cost
        self.on_snapshot = on_snapshot
        self.started = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque()  # (monotonic time, new outcomes)

    @property
    def new_done(self) -> int:
        rep = self.report
        return rep.succeeded + rep.failed + rep.skipped

    def _sample(self) -> tuple[float, int]:
        now, done = time.monotonic(), self.new_done
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > WINDOW_S:
            self._samples.popleft()
        return now, done

    def rate(self) -> float:
        """New outcomes per second: over the last ``WINDOW_S`` once the run is that old (unless that
        window saw none), else since the start."""
        now, done = self._sample()
        elapsed = now - self.started
        t0, d0 = self._samples[0]
        if elapsed > WINDOW_S and now - t0 > 1.0 and done > d0:
            return (done - d0) / (now - t0)
        return done / elapsed if elapsed > 0 else 0.0

    def snapshot(self) -> ProgressSnapshot:
        rep = self.report
        rate = self.rate()
        done, total = self.new_done, rep.eligible - rep.already_done
        remaining = rep.eligible - rep.accounted  # rows not read yet may still turn out already done
        eta = 0.0 if not remaining else (remaining / rate if rate > 0 else None)
        eta_text = "?" if eta is None else format_duration(eta)
        pct = 100.0 * done / total if total else 100.0
        line = (
            f"{self.label}: {done}/{total} new prompts done ({pct:.0f}%), {rep.succeeded} ok, {rep.failed} failed"
            f"{f', {rep.skipped} skipped' if rep.skipped else ''}; {rep.already_done} already done earlier; "
            f"{self.describe_cost()} so far; {rate:.2f} prompts/s; ETA {eta_text}"
        )
        return ProgressSnapshot(
            cell=self.label, new_done=done, new_total=total, already_done=rep.already_done, succeeded=rep.succeeded,
            failed=rep.failed, rate_per_s=rate, eta_s=eta, line=line,
        )  # fmt: skip

    def line(self) -> str:
        return self.snapshot().line

    def tell(self) -> None:
        """Log the line and hand the snapshot on; a failing listener never stops the run."""
        snap = self.snapshot()
        self.emit(snap.line)
        if self.on_snapshot is not None:
            try:
                self.on_snapshot(snap)
            except Exception as exc:  # noqa: BLE001 - showing progress must never fail the cell
                self.emit(f"{self.label}: progress not shown live ({type(exc).__name__})")
                self.on_snapshot = None

    async def every(self, interval_s: float) -> None:
        """Emit a line every ``interval_s``, the first one as soon as new results are coming in."""
        first_at = time.monotonic() + interval_s
        first_done_at: float | None = None
        while (now := time.monotonic()) < first_at:
            if self.new_done > 0:
                first_done_at = first_done_at or now
                if now - first_done_at >= FIRST_LINE_GRACE_S:
                    break
            self._sample()
            await asyncio.sleep(min(_POLL_S, interval_s))
        while True:
            if self.on_snapshot is None:
                self.tell()
            else:  # the listener may write to a database: off the event loop
                await asyncio.to_thread(self.tell)
            await asyncio.sleep(interval_s)
