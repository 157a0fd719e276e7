"""The poll schedule's frontier: polls per task against detection lag, for a latency distribution.

A simulation of ``PollPolicy.poll_times`` with a warm ``LatencyTracker`` (256 completions of the same
distribution): each task of latency T is polled at the schedule's times until one is at or after T; it
costs that many polls, and is seen ``t - T`` late. Pure arithmetic (no sandbox, no clock), so it can be
read at the real, unscaled latencies, where ``max_interval_s`` may bind. ``detection_lag_pct`` is the
mean lag as a percentage of the mean latency L.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

# quantile sets from sparse to dense; the first is PollPolicy's default
SCHEDULES: dict[str, tuple[float, ...]] = {
    "default": (0.3, 0.6, 0.8, 0.9, 0.95, 0.99),
    "sparse-3": (0.6, 0.9, 0.99),
    "sparse-4": (0.5, 0.8, 0.95, 0.99),
    "mid-5": (0.4, 0.7, 0.9, 0.97, 0.995),
    "dense-7": (0.2, 0.45, 0.65, 0.8, 0.9, 0.96, 0.99),
    "dense-9": (0.15, 0.3, 0.45, 0.6, 0.72, 0.82, 0.9, 0.96, 0.99),
}


def _lognormal(median: float, sigma: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [median * math.exp(sigma * rng.gauss(0, 1)) for _ in range(n)]


def simulate(quantiles: tuple[float, ...], median: float, sigma: float, n: int = 4000) -> dict[str, float]:
    from nbpro_pipeline.providers.policies import LatencyTracker, PollPolicy

    policy = PollPolicy(quantiles=quantiles)
    tracker = LatencyTracker()
    for x in _lognormal(median, sigma, 256, 1):
        tracker.add(x)
    polls, lags = [], []
    for latency in _lognormal(median, sigma, n, 2):
        count, t = 0, 0.0
        for t in policy.poll_times(tracker):
            count += 1
            if t >= latency:
                break
        polls.append(count)
        lags.append(t - latency)
    mean_l = median * math.exp(sigma**2 / 2)
    return {
        "polls_per_task": round(statistics.mean(polls), 3),
        "detection_lag_pct": round(100 * statistics.mean(lags) / mean_l, 2),
    }


def frontier(median: float, sigma: float) -> list[dict[str, Any]]:
    """Every schedule's (polls per task, detection lag), fewest polls first."""
    points = [{"schedule": name, "quantiles": list(q), **simulate(q, median, sigma)} for name, q in SCHEDULES.items()]
    return sorted(points, key=lambda p: p["polls_per_task"])
