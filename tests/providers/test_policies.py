import itertools
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from nbpro_pipeline.providers.policies import PollPolicy, RetryPolicy, parse_retry_after


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
