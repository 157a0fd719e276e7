"""bench/reject_frontier.py sweeps what the admission may spend to learn more at a reject provider (429s,
polls); its points must keep the order the performance page reads off them."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

from reject_frontier import best_within_limits, sweep  # noqa: E402

pytestmark = pytest.mark.slow  # a sweep of simulated runs
SPREAD = {"n": 600, "slots": 16, "median": 17.0, "sigma": 0.234, "steps_per_l": 200}


def _by(points, policy="expected", share=None, schedule="default"):
    return next(
        p
        for p in points
        if p["policy"] == policy and p["schedule"] == schedule and (share is None or p["target_429_share"] == share)
    )


def test_429s_and_polls_each_buy_busy_slots_and_the_best_point_keeps_to_the_limits():
    with ThreadPoolExecutor(1) as pool:  # any Executor: the bench uses processes, one thread is enough here
        points = sweep(SPREAD, seeds=1, pool=pool)
    oracle = _by(points, policy="oracle", share=0.0)
    assert oracle["busy_share"] == 1.0 and oracle["http_429_share"] == 0
    cautious, reckless = _by(points, share=0.01), _by(points, share=0.0)  # aim at 1 %, and no margin at all
    assert reckless["http_429_share"] > 3 * cautious["http_429_share"]
    assert reckless["busy_share"] > cautious["busy_share"]
    sparse, dense = _by(points, share=0.05, schedule="sparse-4"), _by(points, share=0.05, schedule="dense-9")
    assert dense["polls_per_task"] > sparse["polls_per_task"] + 1.5
    assert dense["busy_share"] > sparse["busy_share"]
    assert all(p["busy_share"] < 1.0 for p in points if p["policy"] == "expected")
    best = best_within_limits(points)
    assert best is not None and best["polls_per_task"] <= 3 and best["http_429_share"] <= 0.05
    assert best["span_over_ideal"] > oracle["span_over_ideal"]
