import itertools
import math
import random
import statistics
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from nbpro_pipeline.providers.policies import LatencyTracker, PollPolicy, RetryPolicy, parse_retry_after


def test_backoff_grows_exponentially_is_capped_and_jittered_downwards():
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0, jitter=0.5)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        samples = [policy.backoff(attempt, rng) for _ in range(200)]
        assert max(samples) <= ceiling
        assert min(samples) >= ceiling * 0.5
        assert max(samples) - min(samples) > ceiling * 0.3  # jitter actually spreads retries


def test_retry_after_wins_over_backoff_but_is_bounded():
    policy = RetryPolicy(base_delay_s=0.01, max_retry_after_s=60)
    assert policy.delay(1, 7.0) == 7.0
    assert policy.delay(1, 3600.0) == 60
    assert policy.delay(1, None) <= 0.01


@pytest.mark.parametrize(
    ("header", "expected"), [("3", 3.0), ("0.25", 0.25), ("-2", 0.0), (None, None), ("soon", None)]
)
def test_parse_retry_after_seconds(header, expected):
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date():
    now = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(42)


def test_poll_intervals_start_quick_then_back_off_to_a_cap():
    policy = PollPolicy(first_delay_s=0.5, factor=2, max_interval_s=3)
    assert list(itertools.islice(policy.intervals(), 6)) == [0.5, 1.0, 2.0, 3, 3, 3]


def _simulate(policy: PollPolicy, tracker, latencies: list[float]) -> tuple[float, float]:
    """Mean polls per task and mean wait past completion when each task is polled on ``poll_times``."""
    polls, late = 0, 0.0
    for latency in latencies:
        for k, at in enumerate(policy.poll_times(tracker), start=1):
            if at >= latency:
                polls += k
                late += at - latency
                break
    return polls / len(latencies), late / len(latencies)


def test_cold_poll_times_are_the_classic_backoff():
    policy = PollPolicy(first_delay_s=0.5, factor=2, max_interval_s=3)
    assert list(itertools.islice(policy.poll_times(LatencyTracker()), 5)) == [0.5, 1.5, 3.5, 6.5, 9.5]


@pytest.mark.parametrize(
    ("draw", "max_polls", "max_late_fraction"),
    [
        (lambda rng: rng.lognormvariate(math.log(20), 0.5), 3.0, 0.2),  # slow, long tail: few polls
        (lambda rng: rng.uniform(0.8, 1.2), 3.5, 0.06),  # quick and tight: detected within a few %
    ],
)
def test_learned_schedule_polls_few_times_and_detects_completion_soon(draw, max_polls, max_late_fraction):
    rng = random.Random(3)
    tracker = LatencyTracker()
    for _ in range(256):
        tracker.add(draw(rng))
    latencies = [draw(rng) for _ in range(2000)]
    classic_polls, _ = _simulate(PollPolicy(adaptive=False), tracker, latencies)
    polls, late = _simulate(PollPolicy(), tracker, latencies)
    assert polls <= max_polls
    assert late <= max_late_fraction * statistics.mean(latencies)
    assert polls < classic_polls or late < 0.5  # better than the fixed 2 s / x1.6 schedule on one count


def test_schedule_switches_to_learned_times_mid_wait_and_never_polls_faster_than_min_interval():
    tracker = LatencyTracker()
    policy = PollPolicy(first_delay_s=2.0, min_interval_s=0.05)
    times = policy.poll_times(tracker)
    assert next(times) == 2.0  # cold
    for i in range(16):
        tracker.add(3.0 + i / 100)  # meanwhile other tasks were seen to take 3.0-3.15 s
    assert 3.0 <= next(times) <= 3.15  # not the cold backoff's 2 + 3.2 s

    instant = LatencyTracker()
    for _ in range(16):
        instant.add(0.0)  # a provider that finishes at once
    polls = list(itertools.islice(policy.poll_times(instant), 6))
    assert polls[0] == pytest.approx(0.05)
    assert all(b - a >= 0.05 - 1e-9 for a, b in itertools.pairwise(polls))


def test_a_small_shift_of_the_learned_times_does_not_poll_the_same_level_twice():
    tracker = LatencyTracker(window=16)
    for i in range(16):
        tracker.add(10.0 + i)  # 10..25 s
    times = PollPolicy().poll_times(tracker)
    first = next(times)
    for _ in range(8):
        tracker.add(first + 1.0)  # meanwhile the window moved up a little
    second = next(times)
    assert second - first > 2.0  # the next quantile level, not the same level a moment later


def test_warm_gaps_may_grow_with_the_learned_median_beyond_the_fixed_cap():
    """60 s tasks (4K) have quantiles ~11 s apart: an 8 s cap would add a poll between most of them."""
    rng = random.Random(4)
    tracker = LatencyTracker()
    for _ in range(256):
        tracker.add(60 * math.exp(0.25 * rng.gauss(0, 1)))
    times = list(itertools.islice(PollPolicy(max_interval_s=8).poll_times(tracker), 8))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) > 8  # the fixed cap no longer binds...
    assert max(gaps) <= 0.25 * tracker.quantiles((0.5,))[0] + 1e-9  # ...a quarter of the median does
    assert times[:6] == pytest.approx(tracker.quantiles(PollPolicy().quantiles), abs=1e-9)  # one per quantile
    short = LatencyTracker()
    for _ in range(64):
        short.add(1.0)
    gaps = [
        b - a for a, b in itertools.pairwise(itertools.islice(PollPolicy(max_interval_s=0.5).poll_times(short), 12))
    ]
    assert max(gaps) <= 0.5 + 1e-9  # short tasks keep the fixed cap


def test_past_every_learned_time_gaps_grow_from_the_last_one_not_from_the_whole_age():
    """Early in a run the learned times are the first wave's shortest: the rest of it ends just after.
    Polled from the task's whole age (x0.6) it would wait ~6 s at 10 s; from the last learned time it
    waits a floor of 5 % of it and then backs off geometrically, so a stuck task costs few polls."""
    tracker = LatencyTracker()
    for i in range(16):
        tracker.add(9.0 + i / 15)  # the first sixteen ended at 9-10 s
    policy = PollPolicy(max_interval_s=8.0)
    times = list(itertools.takewhile(lambda t: t < 900, policy.poll_times(tracker)))
    beyond = [t for t in times if t > 10.0]
    assert beyond[0] - 10.0 <= 0.5 + 1e-9  # 5 % of the last learned time, not 0.6 x 10 s
    gaps = [b - a for a, b in itertools.pairwise(beyond)]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps))  # never denser as it ages
    assert max(gaps) <= 8.0 + 1e-9
    assert len(beyond) < 130  # a task stuck for the whole 900 s deadline: capped gaps, not a poll storm
