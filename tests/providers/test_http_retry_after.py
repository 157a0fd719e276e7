"""Retry-After as real servers send it: seconds, fractional seconds, an HTTP date, or nothing (then
the backoff policy decides); unit cases for ``parse_retry_after`` and the same over real HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web

from nbpro_pipeline.providers import RetryPolicy, RivyaClient
from nbpro_pipeline.providers.errors import RateLimitedError
from nbpro_pipeline.providers.policies import parse_retry_after

from .http_servers import Origin

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        (" 7 ", 7.0),
        ("0.25", 0.25),  # not in RFC 9110, but sent
        ("-2", 0.0),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("1.5s", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_seconds_fractions_and_nothing_usable(header, expected):
    assert parse_retry_after(header, now=NOW) == expected


def test_http_dates_in_any_zone_in_the_past_or_without_a_zone():
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=42), usegmt=True), now=NOW) == pytest.approx(42)
    assert parse_retry_after("Sat, 21 Nov 2026 14:00:30 +0200", now=NOW) == pytest.approx(30)
    assert parse_retry_after("Sat, 21 Nov 2026 12:01:00 -0000", now=NOW) == pytest.approx(60)  # no zone: UTC
    assert parse_retry_after(format_datetime(NOW - timedelta(hours=1), usegmt=True), now=NOW) == 0.0


def test_absent_header_leaves_the_delay_to_the_backoff_policy():
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0, jitter=0.0)
    assert policy.delay(3, parse_retry_after(None)) == 2.0
    assert policy.delay(3, parse_retry_after("0.1")) == 0.1


def _rate_limited(retry_after: str | None, then_ok: bool = False):
    calls = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(time.monotonic())
        if then_ok and len(calls) > 1:
            return web.json_response({"current_credits": 11})
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = {"error": {"code": "rate_limited", "message": "slow down", "requestId": "req_1"}}
        return web.json_response(body, status=429, headers=headers)

    return handler, calls


@pytest.mark.parametrize(
    ("header", "expected"),
    [("2", 2.0), ("0.75", 0.75), (None, None), ("HTTP-DATE+30", 30.0)],
)
async def test_a_429_carries_the_servers_retry_after(header, expected):
    if header == "HTTP-DATE+30":
        header = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    handler, _ = _rate_limited(header)
    api = Origin({("GET", "/api/v1/credits"): handler})
    async with api, RivyaClient(api.url, "rvya_sk_ra", retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(RateLimitedError) as info:
            await client.balance()
    if expected is None:
        assert info.value.retry_after is None
    else:
        assert info.value.retry_after == pytest.approx(expected, abs=1.5 if expected == 30.0 else 1e-9)


async def test_the_client_waits_a_fractional_retry_after_before_trying_again():
    handler, calls = _rate_limited("0.3", then_ok=True)
    api = Origin({("GET", "/api/v1/credits"): handler})
    retry = RetryPolicy(max_attempts=3, base_delay_s=0.001, jitter=0.0)
    async with api, RivyaClient(api.url, "rvya_sk_ra", retry=retry) as client:
        assert (await client.balance()).amount == 11
        assert client.counters["rate_limited"] == 1
    assert calls[1] - calls[0] >= 0.3  # the server's 0.3 s, not the 1 ms backoff
