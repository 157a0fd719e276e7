"""Retry and polling policies: plain data, so tests and the engine can tune them per provider."""

from __future__ import annotations

import random
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


class PollPolicy(BaseModel):
    """Adaptive polling: a quick first look, then intervals growing by ``factor`` up to a cap.

    Rivya's docs advise a first poll 2-3 s after submit, then every 5-10 s; that is the default.
    ``deadline_s`` bounds the whole wait for one task.
    """

    first_delay_s: float = Field(default=2.0, ge=0)
    factor: float = Field(default=1.6, ge=1)
    max_interval_s: float = Field(default=8.0, ge=0)
    deadline_s: float = Field(default=900.0, gt=0)

    def intervals(self) -> Iterator[float]:
        delay = self.first_delay_s
        while True:
            yield delay
            delay = min(self.max_interval_s, max(delay, 1e-3) * self.factor)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds (fractions tolerated) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
