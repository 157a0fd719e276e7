"""When to submit the next task: while the tasks *expected* to be still unfinished at the provider leave
room under its C slots, so a slot is not held idle until a poll happens to see its task done.

Each held task is still running with probability ``S(age) / S(age at its last poll)`` from the learned
completion times; the sum of those is the estimate, kept ``margin_sd`` standard deviations under C. The
provider's answer is the backstop: a *reject* provider's 429 (never charged) also resets the estimate
(with C of ours made, exactly C run); a *queue* provider is kept ``queue_allowance`` deep. How it was
measured and tuned: docs/performance.md. Pure bookkeeping with an injectable clock, no I/O; ``admit``
serves waiters one at a time, in order.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nbpro_pipeline.providers.policies import LatencyTracker


class AdmissionKind(StrEnum):
    REJECT = "reject"  # over C: 429 (counted, retried, never charged)
    QUEUE = "queue"  # over C: accepted and queued (IN_QUEUE / queued with a queue_position)


class AdmissionSettings(BaseModel):
    """How much work to keep at the provider; see the module docstring."""

    model_config = ConfigDict(frozen=True)

    provider_slots: int = Field(ge=1, description="C: tasks the provider runs at once")
    max_in_flight: int = Field(ge=1, description="cap on tasks held (submitted, not yet seen finished)")
    kind: AdmissionKind = AdmissionKind.REJECT
    queue_allowance: int = Field(default=0, ge=0, description="queue providers: tasks allowed to wait beyond C")
    # below 1: a 429 conditions the estimate to exactly C, and C ≤ C - 1 + 1 would admit again at once
    headroom: float = Field(default=0.25, ge=0, lt=1, description="admit while expected unfinished ≤ C - 1 + this")
    min_samples: int = Field(default=8, ge=1)
    backoff_s: float = Field(default=1.0, ge=0, description="after a 429, admit nothing for this long")
    recheck_s: float = Field(default=0.25, gt=0, description="longest wait before re-evaluating the estimate")
    margin_sd: float = Field(default=0.0, ge=0, description="standard deviations of the estimate kept free")
    target_429_share: float | None = Field(
        default=None, gt=0, lt=1, description="adapt margin_sd so this share of creates is answered 429"
    )
    margin_step: float = Field(default=0.1, gt=0, description="how far one 429 moves the adaptive margin")
    condition_on_429: bool = Field(
        default=True,
        description="a 429 with C or more tasks made conditions them on exactly C running; False: block until a finish",
    )

    @model_validator(mode="after")
    def _queue_needs_kind(self) -> AdmissionSettings:
        if self.queue_allowance and self.kind is not AdmissionKind.QUEUE:
            raise ValueError("queue_allowance applies to queue providers only; set kind='queue'")
        return self


@dataclass
class _Held:
    submitted_at: float
    running_at_age: float = 0.0  # the task was seen unfinished at this age (its last poll)
    alive: float = 1.0  # P(running at running_at_age): below 1 only after a 429 conditioned it
    answered: bool = False  # the provider answered its create (until then it counts, but is not running)
    queue_position: int | None = None
    finished_then: int = 0  # tasks seen finished when the position was reported
    position_at: float = 0.0  # when it was reported


@dataclass
class AdmissionCounters:
    admitted: int = 0
    finished: int = 0
    rejected_429: int = 0  # backstop answers: counted, never charged, never failures
    waits: int = 0  # times wait_for_room had to wait


@dataclass
class Admission:
    """Admits submits by the expected number of unfinished tasks; one per (client, cell)."""

    settings: AdmissionSettings
    tracker: LatencyTracker
    clock: Callable[[], float] = time.monotonic
    counters: AdmissionCounters = field(default_factory=AdmissionCounters)
    _held: dict[Hashable, _Held] = field(default_factory=dict)
    _blocked_until: float = float("-inf")
    _changed: asyncio.Event | None = None
    _turn: asyncio.Lock | None = None
    _margin: float | None = None

    @property
    def margin_sd(self) -> float:
        return self.settings.margin_sd if self._margin is None else self._margin

    def accepted(self) -> None:
        """The provider took a create: an adaptive margin shrinks a little."""
        share = self.settings.target_429_share
        if share is not None:
            self._margin = max(0.0, self.margin_sd - self.settings.margin_step * share / (1 - share))

    # -- what happened ---------------------------------------------------------------------------------
    def submitted(self, key: Hashable) -> None:
        """The provider accepted task ``key``: its age runs from now (held since ``admit``, or from now)."""
        if key not in self._held:
            self.counters.admitted += 1
        self._held[key] = _Held(submitted_at=self.clock(), answered=True)

    async def admit(self, key: Hashable) -> None:
        """Wait for room, then hold ``key`` at once (``submitted`` re-stamps it when the provider answers).
        Waiters take turns in arrival order."""
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:
            await self.wait_for_room()
            self._held[key] = _Held(submitted_at=self.clock())  # its create is on its way
            self.counters.admitted += 1

    def forget(self, key: Hashable) -> None:
        """``key`` was never made at the provider (its submit was refused or failed): drop it, uncounted."""
        if self._held.pop(key, None) is not None:
            self.counters.admitted -= 1
            self._notify()

    def still_running(self, key: Hashable, queue_position: int | None = None) -> None:
        """A poll saw ``key`` unfinished now (queued at ``queue_position``, if the provider says)."""
        held = self._held.get(key)
        if held is not None:
            held.running_at_age = self.clock() - held.submitted_at
            held.alive = 1.0
            held.queue_position = queue_position
            held.finished_then = self.counters.finished
            held.position_at = self.clock()

    def finished(self, key: Hashable) -> None:
        """``key`` was seen in a terminal state (or given up): it no longer counts, and room may open."""
        if self._held.pop(key, None) is not None:
            self.counters.finished += 1
            self._blocked_until = float("-inf")
            self._notify()

    def rejected(self, key: Hashable | None = None, retry_after: float | None = None) -> None:
        """A submit was answered 429 because the provider is full: the estimate was too low. ``key``
        (held by ``admit``) is dropped. With C or more of the held tasks made (and completion times
        known) those are conditioned on exactly C running now; otherwise nothing more is admitted until
        a finish or the backoff (the shorter of ``backoff_s`` and the provider's Retry-After)."""
        if key is not None:
            self.forget(key)
        self.counters.rejected_429 += 1
        if self.settings.target_429_share is not None:
            self._margin = min(4.0, self.margin_sd + self.settings.margin_step)
        samples = self.tracker.sorted_samples()
        made = [h for h in self._held.values() if h.answered]
        full = len(made) >= self.settings.provider_slots and len(samples) >= self.settings.min_samples
        if self.settings.condition_on_429 and full:
            self._condition_on_full(made, samples)
            return
        backoff = self.settings.backoff_s if retry_after is None else min(self.settings.backoff_s, retry_after)
        self._blocked_until = self.clock() + backoff

    def _condition_on_full(self, held: list[_Held], samples: list[float]) -> None:
        """The provider runs exactly C of the ``held`` tasks it made now: each one's chance of running
        becomes its probability given that count, and it is seen (in that sense) at its current age.
        Creates still on their way are left out: they are not running yet."""
        now = self.clock()
        ps = [_running(h, samples, now) for h in held]
        for h, alive in zip(held, alive_given_full(ps, self.settings.provider_slots), strict=True):
            h.running_at_age = now - h.submitted_at
            h.alive = alive

    # -- the estimate ----------------------------------------------------------------------------------
    @property
    def held(self) -> int:
        return len(self._held)

    def expected_unfinished(self) -> float:
        """Expected number of held tasks the provider is still working on (all of them when cold)."""
        return self.estimate()[0]

    def estimate(self) -> tuple[float, float]:
        """(expected number unfinished, its variance); (held, 0) when cold."""
        samples = self.tracker.sorted_samples()
        if len(samples) < self.settings.min_samples:
            return float(len(self._held)), 0.0
        now = self.clock()
        mean = var = 0.0
        for h in self._held.values():
            p = _running(h, samples, now)
            mean += p
            var += p * (1 - p)
        return mean, var

    def capacity(self) -> float:
        allowance = self.settings.queue_allowance if self.settings.kind is AdmissionKind.QUEUE else 0
        return self.settings.provider_slots + allowance

    def may_submit(self) -> bool:
        """Whether one more task may be submitted now."""
        s = self.settings
        if len(self._held) >= s.max_in_flight or self.clock() < self._blocked_until:
            return False
        if s.kind is AdmissionKind.QUEUE and self._queue_full():
            return False
        mean, var = self.estimate()
        return mean + self.margin_sd * var**0.5 <= self.capacity() - 1 + s.headroom

    def _queue_full(self) -> bool:
        """A held task stands at or beyond the allowance in the provider's queue. A position is as old as
        the answer that reported it, and the queue has moved on since: by every task seen finished, and
        (once completion times are known) by C tasks per mean processing time, the rate a full provider
        frees slots at, whichever is more. A stale position must not block admission until that task is
        next polled: that would tie admission to our detection lag again."""
        done, now = self.counters.finished, self.clock()
        samples = self.tracker.sorted_samples()
        rate = 0.0
        if len(samples) >= self.settings.min_samples:
            rate = self.settings.provider_slots / max(sum(samples) / len(samples), 1e-6)
        return any(
            h.queue_position - max(done - h.finished_then, (now - h.position_at) * rate)
            >= self.settings.queue_allowance
            for h in self._held.values()
            if h.queue_position is not None
        )

    # -- waiting ---------------------------------------------------------------------------------------
    async def wait_for_room(self) -> None:
        """Return once ``may_submit`` holds; re-checks on every finish, and at least every ``recheck_s``
        (the estimate falls as held tasks age)."""
        waited = False
        while not self.may_submit():
            waited = True
            event = self._event()
            event.clear()
            delay = self._recheck_s()
            if self._blocked_until > self.clock():
                delay = min(delay, self._blocked_until - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=max(delay, 0.001))
        if waited:
            self.counters.waits += 1

    def _recheck_s(self) -> float:
        """``recheck_s``, shortened for fast tasks: the estimate moves on the scale of the completion
        times, so a 2 s task is re-evaluated every ~10 ms and a 20 s one every ~100 ms."""
        samples = self.tracker.sorted_samples()
        if len(samples) < self.settings.min_samples:
            return self.settings.recheck_s
        return max(0.002, min(self.settings.recheck_s, samples[len(samples) // 2] / 200))

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()


def survival(samples: list[float], age: float) -> float:
    """P(T > age) from sorted completion times (empirical, with a floor so old tasks never count as 0)."""
    if not samples:
        return 1.0
    above = len(samples) - bisect.bisect_right(samples, age)
    return max(above, 0.5) / len(samples)


def _running(held: _Held, samples: list[float], now: float) -> float:
    """P(``held`` still runs now): its survival since it was last seen running, times the chance it was."""
    return held.alive * _conditional_survival(samples, now - held.submitted_at, held.running_at_age)


def _conditional_survival(samples: list[float], age: float, running_at_age: float) -> float:
    """P(T > age | T > running_at_age): the task was seen running at ``running_at_age``."""
    if age <= running_at_age:
        return 1.0
    return min(1.0, survival(samples, age) / survival(samples, running_at_age))


def alive_given_full(ps: list[float], running: int) -> list[float]:
    """P(task i is running | exactly ``running`` of the tasks are), for independent tasks running with
    probabilities ``ps``: ``p_i · P(the others count running - 1) / P(all count running)``, from the
    Poisson-binomial distributions of the tasks before and after each one (O(n·running)). All ones when
    there are no more tasks than that; the shares scaled to sum to ``running`` if the count is
    (numerically) impossible under ``ps``."""
    n = len(ps)
    if n <= running:
        return [1.0] * n
    before = [[1.0]]
    for p in ps:
        before.append(_add_task(before[-1], p, running))
    after = [[1.0]]
    for p in reversed(ps):
        after.append(_add_task(after[-1], p, running))
    after.reverse()
    total = before[n][running]  # n > running: the distribution reaches that count
    if total <= 0.0:
        scale = running / max(sum(ps), 1e-12)
        return [min(1.0, p * scale) for p in ps]
    out = []
    for i, p in enumerate(ps):
        left, right = before[i], after[i + 1]
        others = sum(left[j] * right[running - 1 - j] for j in range(len(left)) if 0 <= running - 1 - j < len(right))
        out.append(min(1.0, p * others / total))
    return out


def _add_task(dist: list[float], p: float, cap: int) -> list[float]:
    """The distribution of a running count with one more task (running with probability ``p``), cut at ``cap``."""
    out = [0.0] * min(len(dist) + 1, cap + 1)
    for k, q in enumerate(dist):
        out[k] += q * (1 - p)
        if k + 1 <= cap:
            out[k + 1] += q * p
    return out
