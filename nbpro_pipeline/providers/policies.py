"""Retry and polling policies: plain data, so tests and the engine can tune them per provider."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from pydantic import BaseModel, Field


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter; a server's Retry-After always wins over a shorter backoff."""

    max_attempts: int = Field(default=6, ge=1)
    base_delay_s: float = Field(default=0.5, ge=0)
    max_delay_s: float = Field(default=30.0, ge=0)
    jitter: float = Field(default=0.5, ge=0, le=1)  # fraction of the delay randomised away
    max_retry_after_s: float = Field(default=300.0, ge=0)  # never sleep longer than this on a header

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based); jitter keeps concurrent clients apart."""
        raw = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        r = (rng or random).random()
        return raw * (1 - self.jitter * r)

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_s)
        return self.backoff(attempt, rng)


class LatencyTracker:
    """How long recent tasks of one client took from submit to a terminal state.

    The poll schedule is read off these times (``PollPolicy.poll_times``), so it follows whatever the
    provider is doing today: a 1 s model is polled around 1 s, a 20 s one around 20 s, with the same
    expected number of polls. A sliding window, so a provider that slows down is followed.
    """

    def __init__(self, window: int = 256) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self._added = 0
        self._cached_at = -1
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, seconds: float) -> None:
        self._samples.append(max(0.0, seconds))
        self._added += 1

    def sorted_samples(self) -> list[float]:
        """The window, ascending; re-sorted only every few new samples, since every poll of every task
        (and every admission decision) reads it. Do not modify the list."""
        if self._cached_at < 0 or self._added - self._cached_at >= 8:
            self._sorted = sorted(self._samples)
            self._cached_at = self._added
        return self._sorted

    def quantiles(self, qs: tuple[float, ...]) -> list[float]:
        """The ``qs`` quantiles of the window, ascending."""
        data = self.sorted_samples()
        if not data:
            return []
        last = len(data) - 1
        return [data[min(last, int(q * last + 0.5))] for q in qs]


class PollPolicy(BaseModel):
    """When to poll a task: at the quantiles of recently observed completion times, else backing off.

    Until ``min_samples`` tasks have finished (the cold start) it is the classic schedule: a first poll
    after ``first_delay_s`` (Rivya's docs advise 2-3 s), then intervals growing by ``factor`` up to
    ``max_interval_s``. Once the client has seen enough completions (``LatencyTracker``), polls go at
    the ``quantiles`` of those times: the expected number of polls is then ``1 + sum(1 - q)`` over all
    quantiles but the first (about 2.5 with the defaults) whatever the latency, and a task finishing
    between two quantiles waits only for the next one. Past the last learned time the gaps grow
    geometrically from it (``_beyond_learned_step``).
    Gaps never exceed ``max_interval_s`` (except before the first poll) nor fall below
    ``min_interval_s``; once warm the cap is at least ``max_interval_of_median`` of the learned median,
    so a 60 s task (Nano Banana Pro at 4K) is not polled every 8 s between quantiles 11 s apart (at
    4K that cap alone cost ~0.25 polls per task). ``deadline_s`` bounds the whole wait for one task.
    """

    first_delay_s: float = Field(default=2.0, ge=0)
    factor: float = Field(default=1.6, ge=1)
    max_interval_s: float = Field(default=8.0, ge=0)
    deadline_s: float = Field(default=900.0, gt=0)
    adaptive: bool = True
    quantiles: tuple[float, ...] = (0.3, 0.6, 0.8, 0.9, 0.95, 0.99)
    min_samples: int = Field(default=8, ge=1)
    min_interval_s: float = Field(default=0.05, ge=0)
    max_interval_of_median: float = Field(default=0.25, ge=0)
    straggler_floor: float = Field(default=0.05, ge=0, description="past every learned time: least gap, x the last")
    not_found_grace_s: float = Field(
        default=30.0, ge=0, description="a 404 this soon after the create is the provider's store catching up"
    )
    cancel_timeout_s: float = Field(default=30.0, gt=0, description="bounds the cancel and last poll at the deadline")

    def _beyond_learned_step(self, t: float, last_learned: float, cap: float) -> float:
        """The gap after a poll at age ``t``, past every learned time. Early in a run the learned times
        are the *shortest* of the first wave (the long ones have not finished yet), so a task beyond
        them is most likely an ordinary one: the gaps grow from the last learned time, by ``factor - 1``
        of the time since it, from a floor of ``straggler_floor`` of it, not from the task's whole
        age (which polled the rest of the first wave one long gap late: at Nano Banana Pro's 1K spread
        most of it ends within a quarter of the median after the first completions). A real straggler
        still backs off geometrically, so a stuck task costs a few polls per doubling of its age."""
        since = max(0.0, t - last_learned)
        return min(cap, max(self.min_interval_s, self.straggler_floor * last_learned, since * (self.factor - 1)))

    def intervals(self) -> Iterator[float]:
        """The classic (cold) schedule as gaps between polls."""
        delay = self.first_delay_s
        while True:
            yield delay
            delay = min(self.max_interval_s, max(delay, 1e-3) * self.factor)

    def poll_times(self, tracker: LatencyTracker | None = None) -> Iterator[float]:
        """Seconds after submit at which to poll, ascending; consults ``tracker`` before every poll, so
        a task that started cold switches to the learned schedule as soon as there is one."""
        t, gap, level = 0.0, None, 0
        while True:
            warm = self.adaptive and tracker is not None and len(tracker) >= self.min_samples
            planned = tracker.quantiles(self.quantiles) if warm else []  # type: ignore[union-attr]
            cap = self.max_interval_s
            if warm:
                cap = max(cap, self.max_interval_of_median * tracker.quantiles((0.5,))[0])  # type: ignore[union-attr]
            # the next quantile *level* not yet used: when the learned times shift a little between two
            # polls, the same level must not be polled twice a moment apart
            nxt = None
            while level < len(planned):
                level += 1
                if planned[level - 1] >= t + self.min_interval_s:
                    nxt = planned[level - 1]
                    break
            if nxt is not None:
                step = nxt - t if gap is None else min(nxt - t, cap)
            elif warm:  # later than every learned time: a straggler, or the learned times are still young
                step = self._beyond_learned_step(t, planned[-1], cap)
            elif gap is None:
                step = self.first_delay_s
            else:
                step = min(self.max_interval_s, max(gap, 1e-3) * self.factor)
            gap = step
            t += step
            yield t


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header, or None when it says nothing usable (absent, empty,
    garbage, not finite): then the backoff policy decides (``RetryPolicy.delay``).

    RFC 9110 allows delta-seconds or an HTTP date; fractional seconds ("0.5") are not in the RFC but
    are sent, so they are read too. A date in the past, or a negative number, means "now" (0). A date
    without a zone is taken as UTC, the only zone HTTP dates use.
    """
    if not value or not (value := value.strip()):
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


MiB = 1024 * 1024


class AnswerBounds(BaseModel):
    """Caps on what a provider may send (providers.md section 4: endless or huge bodies, trickles). An
    inline ``data:`` image rides inside an API answer, so that cap leaves room for one."""

    max_api_body_bytes: int = Field(default=64 * MiB, ge=1024, description="one API answer (JSON)")
    max_image_bytes: int = Field(default=64 * MiB, ge=1024, description="one result image, downloaded or inline")
    download_timeout_s: float = Field(default=300.0, gt=0, description="one result download, however it trickles")
