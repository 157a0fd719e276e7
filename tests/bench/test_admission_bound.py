"""bench/_admission_bound.py drives the engine's real Admission against a simulated reject provider:
its figures must keep meaning what the performance page says they mean."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

from _admission_bound import simulate  # noqa: E402

SPREAD = {"n": 600, "slots": 16, "median": 17.0, "sigma": 0.234, "steps_per_l": 200}


def test_the_oracle_is_always_full_and_only_the_drain_is_left():
    oracle = simulate("oracle", **SPREAD)
    assert oracle.busy_share == pytest.approx(1.0)
    assert oracle.http_429_share == 0 and oracle.polls_per_task == 0
    assert 1.0 < oracle.span_over_ideal < 1.1  # the last wave's drain


def test_the_estimate_beats_holding_slots_until_seen_done_within_its_429_share():
    held = simulate("held", **SPREAD)
    expected = simulate("expected", share_429=0.05, **SPREAD)
    assert held.http_429_share == 0  # held never oversubscribes
    assert expected.busy_share > held.busy_share
    assert expected.span_over_ideal < held.span_over_ideal
    assert 0 < expected.http_429_share < 0.1
    assert 1.5 < expected.polls_per_task < 3.5
