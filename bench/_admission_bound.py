"""What admission can reach at a reject provider, from the information it has: a simulation.

At a *reject* provider (429 beyond C) the engine learns that a slot freed only once a poll sees a task
done; the estimate (``engine/admission.py``) bridges that detection lag with the learned completion
times, and its error is what a 429 pays for. How close to the provider's bound N·L/C can that come
with ~2.5 polls per task and a few percent of creates answered 429? The timed runs cannot say (their
figures mix the estimate with HTTP, the event loop and the process), so this drives the engine's own
``Admission``, on its injectable clock, against a simulated provider of C slots: lognormal processing
times, each task polled at ``PollPolicy.poll_times`` until a poll is at or after its end, creates
answered at once, completion times learned as tasks are seen done (a cold start, as in a real run).
Beside it:

- ``oracle``: a slot is refilled the instant it frees (no detection lag, no 429): what is left is the
  drain of the last wave, which no admission can remove;
- ``held``: the admission before issue 14 (a slot is held until its task is seen done).

``span_over_ideal`` is the provider's span (first create to last finish) over N·L/C, L the mean;
``busy_share`` the provider's mean occupancy from 2 L to the last submit, as a share of C. Pure
arithmetic on simulated time, so it reads the real, unscaled latencies in seconds of CPU.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

POLICIES: dict[str, dict[str, Any]] = {
    "oracle": {},
    "held": {},
    "expected@3%": {"share_429": 0.03},  # the engine's default admission_429_share
    "expected@5%": {"share_429": 0.05},  # the goal's limit
}


@dataclass
class Outcome:
    span_over_ideal: float
    busy_share: float
    polls_per_task: float
    http_429_share: float


@dataclass
class _Run:
    """One simulated cell: the provider's slots, and what the engine's admission knows of them."""

    policy: str
    slots: int
    draw: Callable[[], float]
    admission: Any  # engine.admission.Admission (the oracle never asks it)
    tracker: Any  # providers.policies.LatencyTracker the admission and the poll schedule read
    schedule: Any  # providers.policies.PollPolicy
    ends: dict[int, float] = field(default_factory=dict)  # running at the provider -> finish time
    done: dict[int, float] = field(default_factory=dict)  # finished -> processing time
    polls: list[tuple[float, int]] = field(default_factory=list)  # heap of (when, task)
    times: dict[int, tuple[float, Iterator[float]]] = field(default_factory=dict)  # task -> (start, poll ages)
    keys: Iterator[int] = field(default_factory=itertools.count)
    creates: int = 0
    refused: int = 0
    poll_count: int = 0
    last_end: float = 0.0
    now: float = 0.0  # the simulated clock, the admission's too

    def advance(self, now: float) -> None:
        for key in [k for k, end in self.ends.items() if end <= now]:
            start, _ = self.times[key]
            self.done[key] = self.ends.pop(key) - start

    def poll_due(self, now: float) -> None:
        """Every poll due by ``now``: a task seen done gives its slot back and teaches its time."""
        while self.polls and self.polls[0][0] <= now:
            _, key = heapq.heappop(self.polls)
            self.poll_count += 1
            if key in self.done:
                self.admission.finished(key)
                self.tracker.add(self.done[key])
            else:
                self.admission.still_running(key)
                start, ages = self.times[key]
                heapq.heappush(self.polls, (start + next(ages), key))

    def room(self) -> bool:
        return len(self.ends) < self.slots if self.policy == "oracle" else self.admission.may_submit()

    def submit(self, now: float) -> bool:
        """One create; False if the provider answered 429 (the admission is told, nothing was made)."""
        key = next(self.keys)
        self.creates += 1
        if len(self.ends) >= self.slots:
            self.refused += 1
            self.admission.submitted(key)
            self.admission.rejected(key)
            return False
        self.ends[key] = now + self.draw()
        self.last_end = max(self.last_end, self.ends[key])
        ages = self.schedule.poll_times(self.tracker)
        self.times[key] = (now, ages)
        if self.policy != "oracle":
            self.admission.submitted(key)
            self.admission.accepted()
            heapq.heappush(self.polls, (now + next(ages), key))
        return True


def _run(
    policy: str,
    slots: int,
    median: float,
    sigma: float,
    share_429: float,
    seed: int,
    quantiles: tuple[float, ...] | None,
) -> _Run:
    from nbpro_pipeline.engine.admission import Admission, AdmissionSettings
    from nbpro_pipeline.providers.policies import LatencyTracker, PollPolicy

    rng = random.Random(seed)
    tracker = LatencyTracker()
    settings = AdmissionSettings(
        provider_slots=slots,
        max_in_flight=slots if policy == "held" else slots * 3 // 2,  # EngineSettings.held_cap's defaults
        target_429_share=share_429 or None,  # 0: a fixed margin_sd of 0, no adaptation
        min_samples=10**9 if policy == "held" else 8,  # held: every held task counts, always
    )
    run = _Run(
        policy=policy,
        slots=slots,
        draw=lambda: median * math.exp(sigma * rng.gauss(0, 1)),
        admission=None,
        tracker=tracker,
        schedule=PollPolicy() if quantiles is None else PollPolicy(quantiles=quantiles),
    )
    run.admission = Admission(settings, tracker, clock=lambda: run.now)
    return run


def simulate(policy: str, *, n: int, slots: int, median: float, sigma: float, share_429: float = 0.03,
             seed: int = 1, steps_per_l: int = 400, quantiles: tuple[float, ...] | None = None) -> Outcome:  # fmt: skip
    """``n`` tasks through one cell under ``policy`` (``oracle``, ``held`` or ``expected``), polled at
    ``quantiles`` of the learned times (``PollPolicy``'s default when None)."""
    run = _run(policy, slots, median, sigma, share_429, seed, quantiles)
    mean_l = median * math.exp(sigma**2 / 2)
    dt, remaining, busy, busy_steps = mean_l / steps_per_l, n, 0, 0
    while remaining or run.ends or (policy != "oracle" and run.admission.held):
        now = run.now
        run.advance(now)
        if policy != "oracle":
            run.poll_due(now)
        while remaining and run.room():
            if not run.submit(now):
                break  # refused: the next create waits for the clock to move, as the engine's does
            remaining -= 1
        if remaining and now > 2 * mean_l:
            busy, busy_steps = busy + len(run.ends), busy_steps + 1
        run.now = now + dt
    return Outcome(
        span_over_ideal=run.last_end / (n * mean_l / slots),
        busy_share=busy / max(1, busy_steps) / slots,
        polls_per_task=run.poll_count / n,
        http_429_share=run.refused / max(1, run.creates),
    )


def bound(median: float, sigma: float, *, n: int = 2000, slots: int = 64, seeds: int = 3) -> dict[str, Any]:
    """Each of ``POLICIES``, its figures averaged over ``seeds`` runs (the drain varies with the draw)."""
    out: dict[str, Any] = {}
    for name, extra in POLICIES.items():
        policy = name.split("@")[0]
        runs = [
            simulate(policy, n=n, slots=slots, median=median, sigma=sigma, seed=seed, **extra)
            for seed in range(1, seeds + 1)
        ]
        out[name] = mean_outcome(runs)
    return out


def mean_outcome(runs: list[Outcome]) -> dict[str, float]:
    """Each figure of ``runs`` (one per seed) averaged, to 4 places: one point of a table."""
    return {k: round(statistics.mean(getattr(r, k) for r in runs), 4) for k in Outcome.__dataclass_fields__}
