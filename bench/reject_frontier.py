"""What a reject provider's information allows: the admission's span against its 429s and its polls.

At a reject provider (429 beyond C) the engine knows a slot is free only when a poll sees a task done or
a create is accepted; a 429 says the provider was full. ``bench/_admission_bound.py`` drives the
engine's own ``Admission`` against a simulated provider of C slots with that information; this sweeps
the two things the engine may spend to learn more, at Nano Banana Pro's real latencies:

- ``share``: the 429 share the adaptive margin aims at (``admission_429_share``), 1 % to 20 %, and no
  margin at all (every create the plain estimate allows), at the default poll schedule;
- ``schedule``: the poll schedule (``bench/_frontier.py``'s quantile sets, sparse to dense), at 5 %.

Each point is the mean of ``--seeds`` runs of N tasks. ``best_within_limits`` is the smallest span of
the points inside issue 14's limits (at most 3 polls per task and 5 % of creates answered 429); a timed
run adds to it what the simulation leaves out (HTTP, the event loop, the process's start and end).

    .venv/bin/python bench/reject_frontier.py [--n 2000] [--seeds 3] [--resolutions 1K,2K,4K] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _admission_bound import Outcome, mean_outcome, simulate  # noqa: E402
from _frontier import SCHEDULES  # noqa: E402

SHARES = (0.01, 0.03, 0.045, 0.05, 0.10, 0.20)  # 4.5 %: a point that keeps inside 5 % at every seed
SCHEDULE_SWEEP = ("sparse-4", "default", "dense-7", "dense-9")
SCHEDULE_SHARE = 0.05
LIMITS = {"polls_per_task": 3.0, "http_429_share": 0.05}


def _points() -> list[tuple[str, float, str]]:
    """(policy, 429 share, schedule) of every point: the oracle, the share sweep, the schedule sweep."""
    points = [("oracle", 0.0, "default")] + [("expected", s, "default") for s in (*SHARES, 0.0)]
    return points + [("expected", SCHEDULE_SHARE, name) for name in SCHEDULE_SWEEP if name != "default"]


def _one(job: tuple[str, float, str, dict[str, Any], int]) -> Outcome:
    policy, share, schedule, spread, seed = job
    return simulate(policy, share_429=share, seed=seed, quantiles=SCHEDULES[schedule], **spread)


def sweep(spread: dict[str, Any], seeds: int, pool: Executor) -> list[dict[str, Any]]:
    """Every point of ``_points`` at ``spread`` (n, slots, median, sigma), averaged over ``seeds``."""
    points = _points()
    jobs = [(*p, spread, seed) for p in points for seed in range(1, seeds + 1)]
    outcomes = list(pool.map(_one, jobs))
    out = []
    for i, (policy, share, schedule) in enumerate(points):
        means = mean_outcome(outcomes[i * seeds : (i + 1) * seeds])
        out.append({"policy": policy, "target_429_share": share, "schedule": schedule, **means})
    return out


def best_within_limits(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    inside = [p for p in points if p["policy"] == "expected" and all(p[k] <= limit for k, limit in LIMITS.items())]
    return min(inside, key=lambda p: p["span_over_ideal"], default=None)


def _print(resolution: str, points: list[dict[str, Any]]) -> None:
    for p in points:
        share = p["target_429_share"]
        label = f"{100 * share:>4g} % aim" if share else "no margin"
        label = "oracle" if p["policy"] == "oracle" else f"{label}, {p['schedule']}"
        print(
            f"  {resolution} {label:<24} span/ideal {p['span_over_ideal']:.4f}  busy {100 * p['busy_share']:.1f} %  "
            f"polls/task {p['polls_per_task']:.2f}  429s {100 * p['http_429_share']:.1f} %",
            flush=True,
        )


def main() -> int:
    from nbpro_pipeline.sandbox.config import REALISTIC_PROCESSING

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--resolutions", default="1K,2K,4K")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    resolutions = args.resolutions.split(",")
    if set(resolutions) - set(REALISTIC_PROCESSING):
        parser.error(f"resolutions from {sorted(REALISTIC_PROCESSING)}")
    t0, out = time.perf_counter(), {}
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        for resolution in resolutions:
            dist = REALISTIC_PROCESSING[resolution]
            spread = {"n": args.n, "slots": args.slots, "median": dist["median"], "sigma": dist["sigma"]}
            points = sweep(spread, args.seeds, pool)
            _print(resolution, points)
            out[resolution] = {"points": points, "best_within_limits": best_within_limits(points)}
    print(f"  {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.json:
        print(json.dumps({"n": args.n, "slots": args.slots, "seeds": args.seeds, "limits": LIMITS, "resolutions": out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
