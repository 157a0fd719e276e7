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


def test_queue_admission_accepts_beyond_the_limit_and_starts_each_when_a_slot_frees(sandbox, odi, rivya):
    configure(
        sandbox, "odirouter", latency=slow(processing=0.4), rate_limit={"max_concurrent_tasks": 2, "admission": "queue"}
    )
    ids = []
    for prompt in "abcd":
        response = odi.submit(prompt=prompt)
        assert response.status_code == 200  # accepted, never 429
        ids.append(response.json()["request_id"])
    waiting = odi.status(ids[3]).json()
    assert waiting["status"] == "IN_QUEUE" and waiting["queue_position"] == 1  # c is ahead of it
    assert odi.status(ids[0]).json()["status"] == "IN_PROGRESS"
    for request_id in ids:
        odi.wait(request_id, timeout=5)
    assert sandbox.stats()["odirouter"]["rate_limited_429"] == 0
    configure(
        sandbox, "rivya", latency=slow(processing=0.4), rate_limit={"max_concurrent_tasks": 1, "admission": "queue"}
    )
    assert rivya.create(prompt="x").status_code in (200, 201)
    queued = rivya.create(prompt="y")
    assert queued.status_code in (200, 201) and queued.json()["status"] == "queued"


def test_processing_latency_per_resolution():
    from nbpro_pipeline.sandbox.config import REALISTIC_PROCESSING, SandboxConfig

    config = SandboxConfig().updated({"rivya": {"latency": {"processing_by_resolution": REALISTIC_PROCESSING}}})
    latency = config.rivya.latency
    medians = [latency.processing_for(r).sample(0.5) for r in ("1K", "2K", "4K")]
    assert [round(m) for m in medians] == [17, 35, 60]
    assert round(latency.processing_for("4K").sample(0.95)) == 90  # p95 of the published measurements
    assert latency.processing_for(None) == latency.processing
