"""Request-rate limits (token bucket) and concurrent-task limits, answered 429 with Retry-After."""

from __future__ import annotations

import time

from tests.sandbox.conftest import assert_error, assert_gateway_error, configure, slow


def test_token_bucket_allows_the_burst_then_429(sandbox, rivya):
    configure(sandbox, "rivya", rate_limit={"requests_per_s": 5, "burst": 3, "retry_after_s": 0.2})
    codes = [rivya.http.get("/api/v1/credits").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = rivya.http.get("/api/v1/credits")
    assert_error(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "0.2"
    time.sleep(0.25)  # one token refills every 0.2 s
    assert rivya.http.get("/api/v1/credits").status_code == 200


def test_computed_retry_after_is_whole_seconds_at_least_one(sandbox, odi):
    configure(sandbox, "odirouter", rate_limit={"requests_per_s": 0.5, "burst": 1})
    assert odi.submit(prompt="a").status_code == 200
    refused = odi.submit(prompt="b")
    assert_gateway_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert refused.headers["Retry-After"] == "2"  # next token in ~2 s at 0.5 requests/s
    assert sandbox.stats()["odirouter"]["tasks_created"] == 1


def test_limits_are_per_provider_and_off_by_default(sandbox, rivya, odi):
    configure(sandbox, "rivya", rate_limit={"requests_per_s": 1, "burst": 1})
    assert rivya.http.get("/api/v1/credits").status_code == 200
    assert rivya.http.get("/api/v1/credits").status_code == 429
    assert all(odi.submit(prompt=f"free {i}").status_code == 200 for i in range(10))


def test_downloads_and_admin_routes_are_not_rate_limited(sandbox, rivya, http):
    url = rivya.generate("one")["result"]["primary_url"]
    configure(sandbox, "rivya", rate_limit={"requests_per_s": 0.1, "burst": 1})
    assert all(http.get(url).status_code == 200 for _ in range(5))
    assert all(http.get("/_sandbox/stats").status_code == 200 for _ in range(5))


def test_rate_limit_can_be_switched_off_again(sandbox, rivya):
    configure(sandbox, "rivya", rate_limit={"requests_per_s": 1, "burst": 1})
    rivya.http.get("/api/v1/credits")
    assert rivya.http.get("/api/v1/credits").status_code == 429
    configure(sandbox, "rivya", rate_limit={"requests_per_s": None})
    assert all(rivya.http.get("/api/v1/credits").status_code == 200 for _ in range(5))


def test_concurrency_limit_counts_unfinished_tasks_only(sandbox, odi):
    configure(sandbox, "odirouter", latency=slow(processing=0.4), rate_limit={"max_concurrent_tasks": 2})
    assert odi.submit(prompt="a").status_code == 200
    assert odi.submit(prompt="b").status_code == 200
    refused = odi.submit(prompt="c")
    assert_gateway_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert refused.headers["Retry-After"] == "1"
    assert odi.http.get("/v1/queue/nano_banana_pro/requests/x/status").status_code == 404  # polls still pass
    time.sleep(0.45)
    assert odi.submit(prompt="c").status_code == 200
    assert sandbox.stats()["odirouter"]["rate_limited_429"] == 1


def test_unrelated_config_changes_do_not_refill_the_bucket(sandbox, rivya):
    configure(sandbox, "rivya", rate_limit={"requests_per_s": 0.2, "burst": 1})
    assert rivya.http.get("/api/v1/credits").status_code == 200
    configure(sandbox, "rivya", faults={"corrupt_image": 0.1})
    assert rivya.http.get("/api/v1/credits").status_code == 429
