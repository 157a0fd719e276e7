"""OdiRouter queue API on the wire: submit, status, response, cancel, balance and both envelopes."""

from __future__ import annotations

import re
import time

import pytest

from nbpro_pipeline.providers.odirouter.wire import (
    OdiCancelResponse,
    OdiResult,
    OdiStatus,
    OdiSubmitResponse,
)
from tests.sandbox.conftest import QUEUE, assert_detail, assert_gateway_error, configure, decode, slow

# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer", "Basic dXNlcjpwYXNz"])
def test_missing_key_is_401_unauthorized(http, sandbox, header):
    headers = {"Authorization": header} if header else {}
    response = http.post("/model" + QUEUE, json={"prompt": "p"}, headers=headers)
    assert_gateway_error(response, 401, "UNAUTHORIZED")
    assert sandbox.stats()["odirouter"]["tasks_created"] == 0


def test_any_non_empty_key_works_unless_allowed_keys_is_set(sandbox, http, odirouter_key):
    ok = http.post("/model" + QUEUE, json={"prompt": "p"}, headers={"Authorization": "Bearer whatever"})
    assert ok.status_code == 200
    configure(sandbox, "odirouter", auth={"allowed_keys": [odirouter_key]})
    refused = http.post("/model" + QUEUE, json={"prompt": "p"}, headers={"Authorization": "Bearer whatever"})
    assert_gateway_error(refused, 401, "UNAUTHORIZED")
    ok = http.post("/model" + QUEUE, json={"prompt": "p"}, headers={"Authorization": f"Bearer {odirouter_key}"})
    assert ok.status_code == 200


# --- submit / status / response -------------------------------------------------------------------


def test_submit_answers_ids_and_absolute_urls(sandbox, odi):
    response = odi.submit(prompt="a glass of water")
    assert response.status_code == 200
    body = OdiSubmitResponse.model_validate(response.json())
    assert re.fullmatch(r"mmsu_[0-9a-f]{24}", body.request_id)
    base = f"{sandbox.odirouter_url}{QUEUE}/requests/{body.request_id}"
    assert (body.status_url, body.response_url, body.cancel_url) == (
        f"{base}/status", f"{base}/response", f"{base}/cancel"
    )  # fmt: skip
    assert body.queue_position == 0


def test_full_flow_with_states_metrics_and_outputs(sandbox, odi, http):
    configure(sandbox, "odirouter", latency=slow(queued=0.25, processing=0.25))
    request_id = odi.submit(prompt="a glass of water", aspect_ratio="9:16", resolution="2K").json()["request_id"]
    seen = []
    while not seen or seen[-1] != "COMPLETED":
        status = OdiStatus.model_validate(odi.status(request_id).json())
        if not seen or seen[-1] != status.status:
            seen.append(status.status)
            if status.status == "IN_QUEUE":
                assert status.queue_position == 0
            if status.status != "COMPLETED":
                pending = odi.response(request_id)
                assert pending.status_code == 202 and pending.json()["status"] == status.status
    assert seen == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    final = odi.status(request_id).json()
    assert final["error"] is None and final["error_type"] is None
    assert final["metrics"]["inference_time"] == pytest.approx(0.25, abs=0.01)
    result = odi.response(request_id)
    assert result.status_code == 200
    parsed = OdiResult.model_validate(result.json())
    assert [o.type for o in parsed.outputs] == ["text", "image"]  # Text is asked for by default
    (image,) = [o for o in parsed.outputs if o.type == "image"]
    assert (image.content_type, image.width, image.height) == ("image/png", 1536, 2752)
    download = http.get(image.url)
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    assert len(download.content) == image.file_size
    assert decode(download.content).size == (1536, 2752)
    assert parsed.metadata["resolution"] == "2K"


def test_image_only_modality_and_image_size_alias(odi, http):
    result = odi.generate(prompt="no words", image_size="4K", aspect_ratio="21:9", response_modalities=["Image"])
    assert [o["type"] for o in result["outputs"]] == ["image"]
    image = result["outputs"][0]
    assert (image["width"], image["height"]) == (6336, 2688)
    assert decode(http.get(image["url"]).content).size == (6336, 2688)


def test_same_resolution_under_both_names_is_fine(odi):
    assert odi.submit(prompt="p", resolution="2K", image_size="2K").status_code == 200


def test_aspect_follows_a_known_first_image_else_square(odi, rivya, http):
    wide = odi.generate(prompt="wide", aspect_ratio="16:9")
    wide_url = next(o["url"] for o in wide["outputs"] if o["type"] == "image")
    follow = odi.generate(prompt="same framing", image_urls=[wide_url, "https://example.com/x.png"])
    image = next(o for o in follow["outputs"] if o["type"] == "image")
    assert (image["width"], image["height"]) == (1376, 768)
    unknown = odi.generate(prompt="unknown ref", image_urls=["https://example.com/portrait.png"])
    image = next(o for o in unknown["outputs"] if o["type"] == "image")
    assert (image["width"], image["height"]) == (1024, 1024)


def test_queue_position_counts_tasks_ahead(sandbox, odi):
    configure(sandbox, "odirouter", latency=slow(queued=30))
    positions = [odi.submit(prompt=f"q{i}").json()["queue_position"] for i in range(3)]
    assert positions == [0, 1, 2]
    first = odi.submit(prompt="q3").json()["request_id"]
    assert odi.status(first).json()["queue_position"] == 3


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 2501}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "p", "aspect_ratio": "auto"}, "aspect_ratio"),
        ({"prompt": "p", "resolution": "8K"}, "resolution"),
        ({"prompt": "p", "resolution": "1k"}, "resolution"),
        ({"prompt": "p", "image_urls": [f"https://a/{i}.png" for i in range(15)]}, "image_urls"),
        ({"prompt": "p", "image_urls": ["ftp://a/b.png"]}, "image_urls[0]"),
        ({"prompt": "p", "resolution": "1K", "image_size": "4K"}, "disagree"),
        ({"prompt": "p", "output_format": "png"}, "output_format"),
        ({"prompt": "p", "response_modalities": ["Audio"]}, "response_modalities"),
        ({"input": {"prompt": "p"}}, "input"),
    ],
)
def test_validation_is_422_detail(odi, sandbox, body, fragment):
    detail = assert_detail(odi.submit(body), 422)
    assert fragment in detail
    assert sandbox.stats()["odirouter"]["tasks_created"] == 0


def test_prompt_of_exactly_2500_characters_and_14_images_is_accepted(odi):
    urls = [f"https://example.com/{i}.png" for i in range(14)]
    assert odi.submit(prompt="x" * 2500, image_urls=urls).status_code == 200


@pytest.mark.parametrize("raw", [b"{oops", b'"just a string"'])
def test_invalid_json_is_422(odi, raw):
    assert_detail(odi.http.post(QUEUE, content=raw, headers={"content-type": "application/json"}), 422)


def test_unknown_request_is_404_detail(odi):
    assert assert_detail(odi.status("mmsu_nope"), 404) == "Request not found"
    assert assert_detail(odi.response("mmsu_nope"), 404) == "Request not found"


def test_rivya_task_is_not_an_odirouter_request(odi, rivya):
    task_id = rivya.create().json()["id"]
    assert odi.status(task_id).status_code == 404


def test_unknown_route_is_404(odi):
    assert_detail(odi.http.get("/v1/queue/flux_dev"), 404)
    assert_detail(odi.http.delete(f"{QUEUE}/requests/mmsu_x"), 404)


# --- billing --------------------------------------------------------------------------------------


def test_charged_on_success_by_resolution(sandbox, odi):
    prices = {}
    for resolution in ("1K", "2K", "4K"):
        result = odi.generate(prompt=f"price {resolution}", resolution=resolution)
        prices[resolution] = next(
            e["amount"] for e in sandbox.ledger("odirouter") if e["task_id"] == result["request_id"]
        )
    assert prices == {"1K": 0.15, "2K": 0.15, "4K": 0.30}
    assert {e["kind"] for e in sandbox.ledger("odirouter")} == {"charge"}
    assert {e["unit"] for e in sandbox.ledger("odirouter")} == {"usd"}
    assert sandbox.wallets()["odirouter"]["balance"] == pytest.approx(1000 - 0.60)


def test_nothing_is_charged_before_completion(sandbox, odi):
    configure(sandbox, "odirouter", latency=slow(processing=0.3))
    request_id = odi.submit(prompt="later").json()["request_id"]
    assert sandbox.ledger("odirouter") == []
    odi.wait(request_id)
    assert [e["amount"] for e in sandbox.ledger("odirouter")] == [0.15]


@pytest.mark.parametrize(
    "kind", ["INFERENCE_FAILURE", "INFERENCE_TIMEOUT", "REQUEST_INVALID", "CONTENT_BLOCKED", "INTERNAL_SERVER_ERROR"]
)
def test_failed_task_is_completed_with_error_and_free(sandbox, odi, kind):
    configure(sandbox, "odirouter", faults={"task_failed": {kind: 1.0}})
    request_id = odi.submit(prompt="doomed").json()["request_id"]
    status = OdiStatus.model_validate(odi.wait(request_id))
    assert status.status == "COMPLETED" and status.error_type == kind and status.error
    response = odi.response(request_id)
    assert response.status_code == 400
    assert response.json()["error_type"] == kind and response.json()["detail"] == status.error
    assert sandbox.ledger("odirouter") == []
    assert sandbox.stats()["odirouter"]["failures_by_type"] == {kind: 1}


def test_balance_check_counts_running_tasks(sandbox, odi):
    configure(sandbox, "odirouter", latency=slow(processing=30))
    sandbox.topup("odirouter", -(1000 - 0.45))  # $0.45: three 1K images, or one 4K and one 1K
    assert odi.submit(prompt="a", resolution="4K").status_code == 200  # holds 0.30
    assert odi.submit(prompt="b").status_code == 200  # holds 0.15, leaves 0
    message = assert_gateway_error(odi.submit(prompt="c"), 402, "INSUFFICIENT_BALANCE")
    assert "$0.15" in message
    assert sandbox.stats()["odirouter"]["tasks_created"] == 2
    assert sandbox.wallets()["odirouter"]["balance"] == pytest.approx(0.45)  # nothing debited yet
    sandbox.topup("odirouter", 0.15)
    assert odi.submit(prompt="c").status_code == 200


# --- cancel ---------------------------------------------------------------------------------------


def test_cancel_in_queue_is_free(sandbox, odi):
    configure(sandbox, "odirouter", latency=slow(queued=30))
    request_id = odi.submit(prompt="never mind").json()["request_id"]
    response = odi.cancel(request_id)
    assert response.status_code == 202
    assert OdiCancelResponse.model_validate(response.json()).status == "CANCELLATION_REQUESTED"
    status = odi.status(request_id).json()
    assert (status["status"], status["error_type"]) == ("COMPLETED", "CANCELED")
    after = odi.response(request_id)
    assert after.status_code == 400 and after.json()["error_type"] == "CANCELED"
    assert sandbox.ledger("odirouter") == []
    assert sandbox.stats()["odirouter"]["tasks_by_state"]["canceled"] == 1


def test_cancel_in_progress_is_billed(sandbox, odi):
    configure(sandbox, "odirouter", latency=slow(processing=30))
    request_id = odi.submit(prompt="too slow", resolution="4K").json()["request_id"]
    assert odi.status(request_id).json()["status"] == "IN_PROGRESS"
    assert odi.cancel(request_id).status_code == 202
    assert odi.status(request_id).json()["error_type"] == "CANCELED"
    assert [(e["task_id"], e["kind"], e["amount"]) for e in sandbox.ledger("odirouter")] == [
        (request_id, "charge", 0.30)
    ]


def test_cancel_after_completion_or_twice_is_400(sandbox, odi):
    done = odi.generate(prompt="fast")["request_id"]
    response = odi.cancel(done)
    assert response.status_code == 400 and response.json() == {"status": "ALREADY_COMPLETED"}
    configure(sandbox, "odirouter", latency=slow(queued=30))
    queued = odi.submit(prompt="x").json()["request_id"]
    assert odi.cancel(queued).status_code == 202
    assert odi.cancel(queued).json() == {"status": "ALREADY_COMPLETED"}


def test_cancel_unknown_is_404(odi):
    response = odi.cancel("mmsu_0000")
    assert response.status_code == 404 and response.json() == {"status": "NOT_FOUND"}


def test_cancelled_task_frees_its_concurrency_slot(sandbox, odi):
    configure(sandbox, "odirouter", latency=slow(queued=30), rate_limit={"max_concurrent_tasks": 1})
    first = odi.submit(prompt="one").json()["request_id"]
    refused = odi.submit(prompt="two")
    assert_gateway_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert refused.headers["Retry-After"] == "30"
    odi.cancel(first)
    assert odi.submit(prompt="two").status_code == 200


def test_status_of_completed_task_is_stable(odi):
    request_id = odi.generate(prompt="stable")["request_id"]
    time.sleep(0.05)
    assert odi.status(request_id).json()["status"] == "COMPLETED"
