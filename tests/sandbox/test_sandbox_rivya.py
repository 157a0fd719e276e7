"""Rivya Public API v1 on the wire: auth, generations, wallet, idempotency, catalogue, envelopes."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest

from nbpro_pipeline.providers.rivya.wire import RivyaCredits, RivyaModelList, RivyaTask
from tests.sandbox.conftest import assert_error, configure, decode, slow

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# --- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "api_key_missing"),
        ("Bearer", "api_key_missing"),
        ("Bearer sk_live_not_rivya", "api_key_invalid"),
        ("rvya_sk_without_scheme", "api_key_invalid"),
    ],
)
def test_missing_or_malformed_key_is_401(http, header, code):
    headers = {"Authorization": header} if header is not None else {}
    message = assert_error(http.get("/api/v1/credits", headers=headers), 401, code)
    assert "Bearer" in message


@pytest.mark.parametrize(
    ("list_name", "status", "code"),
    [
        ("revoked_keys", 401, "api_key_revoked"),
        ("expired_keys", 401, "api_key_expired"),
        ("scope_denied_keys", 403, "api_scope_denied"),
    ],
)
def test_listed_keys_are_refused(sandbox, http, list_name, status, code):
    key = "rvya_sk_listed_key_1"
    configure(sandbox, "rivya", auth={list_name: [key]})
    assert_error(http.get("/api/v1/credits", headers={"Authorization": f"Bearer {key}"}), status, code)
    ok = http.get("/api/v1/credits", headers={"Authorization": "Bearer rvya_sk_other_key"})
    assert ok.status_code == 200


def test_allowed_keys_limits_who_gets_in(sandbox, http, rivya_key):
    configure(sandbox, "rivya", auth={"allowed_keys": [rivya_key]})
    assert http.get("/api/v1/credits", headers={"Authorization": f"Bearer {rivya_key}"}).status_code == 200
    assert_error(
        http.get("/api/v1/credits", headers={"Authorization": "Bearer rvya_sk_stranger"}), 401, "api_key_invalid"
    )


def test_public_api_disabled_is_503(sandbox, rivya):
    configure(sandbox, "rivya", auth={"public_api_disabled": True})
    assert_error(rivya.create(), 503, "public_api_disabled")
    assert sandbox.stats()["rivya"]["tasks_created"] == 0


# --- generations ---------------------------------------------------------------------------------


def test_create_answers_queued_task_object(rivya, sandbox):
    response = rivya.http.post(
        "/api/v1/generations",
        json={"model": "nano-banana-pro", "prompt": "a lighthouse", "client_request_id": "trace-42"},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "id", "status", "model", "reserved_credits", "final_credits", "created_at", "updated_at",
        "result", "error", "client_request_id",
    }  # fmt: skip
    task = RivyaTask.model_validate(body)
    assert re.fullmatch(r"gen_[0-9a-f]{24}", task.id)
    assert (task.status, task.model, task.reserved_credits, task.final_credits) == (
        "queued",
        "nano-banana-pro",
        8,
        None,
    )
    assert body["result"] is None and body["error"] is None and body["client_request_id"] == "trace-42"
    assert ISO_UTC.match(body["created_at"]) and ISO_UTC.match(body["updated_at"])


def test_states_follow_the_clock_then_success_settles(sandbox, rivya, http):
    configure(sandbox, "rivya", latency=slow(queued=0.3, processing=0.3))
    task_id = rivya.create("slow fox").json()["id"]
    seen = []
    while not seen or seen[-1] not in ("succeeded", "failed"):
        status = rivya.get(task_id).json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
    assert seen == ["queued", "processing", "succeeded"]
    task = rivya.get(task_id).json()
    assert task["final_credits"] == 8 and task["error"] is None
    assert task["result"]["urls"] == [task["result"]["primary_url"]]
    assert datetime.fromisoformat(task["updated_at"]) > datetime.fromisoformat(task["created_at"])
    image = http.get(task["result"]["primary_url"])  # no auth on the CDN
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert decode(image.content).size == (1024, 1024)
    kinds = [(e["kind"], e["amount"], e["unit"]) for e in sandbox.ledger("rivya")]
    assert kinds == [("reserve", 8, "credits"), ("settle", 0, "credits")]


def test_unknown_task_is_404(rivya):
    assert_error(rivya.get("gen_000000000000000000000000"), 404, "not_found")


def test_other_providers_task_is_not_visible(rivya, odi):
    request_id = odi.submit().json()["request_id"]
    assert_error(rivya.get(request_id), 404, "not_found")


@pytest.mark.parametrize("method", ["DELETE", "PUT", "POST"])
def test_there_is_no_cancel_endpoint(rivya, method):
    task_id = rivya.create().json()["id"]
    for path in (f"/api/v1/generations/{task_id}", f"/api/v1/generations/{task_id}/cancel"):
        message = assert_error(rivya.http.request(method, path), 404, "not_found")
        assert method in message
    assert rivya.wait(task_id)["status"] == "succeeded"


def test_unknown_route_is_404_in_the_envelope(rivya):
    assert_error(rivya.http.get("/api/v1/nope"), 404, "not_found")
    assert_error(rivya.http.get("/api/v2/generations"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "nano-banana", "prompt": "x"}, "model"),
        ({"model": "nano-banana-pro"}, "prompt"),
        ({"model": "nano-banana-pro", "prompt": ""}, "prompt"),
        ({"model": "nano-banana-pro", "prompt": "x" * 10001}, "prompt"),
        ({"model": "nano-banana-pro", "prompt": "x", "params": {"aspect_ratio": "7:5"}}, "params.aspect_ratio"),
        ({"model": "nano-banana-pro", "prompt": "x", "params": {"resolution": "8K"}}, "params.resolution"),
        ({"model": "nano-banana-pro", "prompt": "x", "params": {"output_format": "jpeg"}}, "params.output_format"),
        ({"model": "nano-banana-pro", "prompt": "x", "params": {"seed": 3}}, "params.seed"),
        ({"model": "nano-banana-pro", "prompt": "x", "extra": 1}, "extra"),
        ({"model": "nano-banana-pro", "prompt": "x", "client_request_id": "c" * 129}, "client_request_id"),
        (
            {
                "model": "nano-banana-pro",
                "prompt": "x",
                "params": {"referenceMediaItems": [{"url": f"https://a/{i}.png"} for i in range(9)]},
            },
            "params.referenceMediaItems",
        ),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(rivya, sandbox, body, field):
    message = assert_error(rivya.http.post("/api/v1/generations", json=body), 400, "validation_failed")
    assert field in message
    assert sandbox.ledger() == [] and rivya.credits() == 100_000


def test_prompt_of_exactly_10000_characters_is_accepted(rivya):
    assert rivya.create("x" * 10_000).status_code == 200


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_non_json_or_non_object_body_is_400(rivya, raw):
    response = rivya.http.post("/api/v1/generations", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400, "validation_failed")


def test_reference_must_be_a_files_api_url(rivya):
    response = rivya.create(referenceMediaItems=[{"url": "https://elsewhere.example/cat.png", "kind": "image"}])
    message = assert_error(response, 400, "validation_failed")
    assert "/api/v1/files" in message and "referenceMediaItems[0]" in message


# --- wallet and idempotency -----------------------------------------------------------------------


def test_credits_and_models(rivya):
    assert RivyaCredits.model_validate(rivya.http.get("/api/v1/credits").json()).current_credits == 100_000
    catalogue = RivyaModelList.model_validate(rivya.http.get("/api/v1/models").json())
    (model,) = catalogue.data
    assert (model.id, model.display_name, model.category, model.runtime) == (
        "nano-banana-pro", "Nano Banana Pro", "image", "async"
    )  # fmt: skip
    assert (model.base_credits, model.billing_type, model.max_prompt_length, model.api_status) == (
        8, "FIXED", 10000, "available"
    )  # fmt: skip
    assert "auto" in model.params["aspect_ratio"]["options"]
    assert model.params["output_format"]["options"] == ["png", "jpg"]
    assert model.params["resolution"]["options"] == ["1K", "2K", "4K"]


def test_reserve_then_refund_on_failure(sandbox, rivya):
    configure(sandbox, "rivya", faults={"task_failed": {"CONTENT_BLOCKED": 1.0}}, latency=slow(processing=0.3))
    created = rivya.create("blocked").json()
    assert rivya.credits() == 100_000 - 8  # reserved at create
    assert rivya.get(created["id"]).json()["final_credits"] is None
    task = rivya.wait(created["id"])
    assert task["status"] == "failed" and task["result"] is None and task["final_credits"] == 0
    assert task["error"]["code"] == "generation_failed" and "CONTENT_BLOCKED" in task["error"]["message"]
    assert rivya.credits() == 100_000
    assert [(e["kind"], e["amount"]) for e in sandbox.ledger("rivya")] == [("reserve", 8), ("refund", -8)]


@pytest.mark.parametrize("kind", ["INFERENCE_FAILURE", "INFERENCE_TIMEOUT", "REQUEST_INVALID", "INTERNAL_SERVER_ERROR"])
def test_every_failure_type_reads_as_generation_failed(sandbox, rivya, kind):
    configure(sandbox, "rivya", faults={"task_failed": {kind: 1.0}})
    task = rivya.generate("will fail")
    assert task["error"] == {"code": "generation_failed", "message": task["error"]["message"]}
    assert task["error"]["message"].startswith(kind)


def test_insufficient_credits_is_402_and_reserves_nothing(sandbox, rivya):
    sandbox.topup("rivya", -(100_000 - 7))
    assert rivya.credits() == 7
    message = assert_error(rivya.create(), 402, "insufficient_credits")
    assert "7" in message and "8" in message
    assert rivya.credits() == 7 and sandbox.ledger() == []
    assert sandbox.stats()["rivya"]["tasks_created"] == 0
    assert sandbox.topup("rivya", 1) == 8
    assert rivya.create().status_code == 200
    assert rivya.credits() == 0


def test_idempotent_replay_returns_the_original_and_charges_once(sandbox, rivya):
    first = rivya.create("only once", idempotency_key="key-1")
    assert first.status_code == 200 and first.json()["status"] == "queued"
    rivya.wait(first.json()["id"])
    replay = rivya.create("only once", idempotency_key="key-1")
    assert replay.status_code == 200 and replay.headers.get("idempotent-replayed") == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert replay.json()["status"] == "succeeded"  # the original task, in its current state
    assert rivya.credits() == 100_000 - 8
    assert [e["kind"] for e in sandbox.ledger("rivya")] == ["reserve", "settle"]
    assert sandbox.stats()["rivya"]["tasks_created"] == 1


def test_replay_ignores_json_key_order_and_spacing(rivya):
    first = rivya.http.post(
        "/api/v1/generations",
        content=b'{"model": "nano-banana-pro", "prompt": "p"}',
        headers={"Idempotency-Key": "k-order", "content-type": "application/json"},
    )
    again = rivya.http.post(
        "/api/v1/generations",
        content=b'{"prompt":"p","model":"nano-banana-pro"}',
        headers={"Idempotency-Key": "k-order", "content-type": "application/json"},
    )
    assert again.json()["id"] == first.json()["id"]


def test_same_key_different_body_is_409(sandbox, rivya):
    rivya.create("one", idempotency_key="key-2")
    message = assert_error(rivya.create("two", idempotency_key="key-2"), 409, "idempotency_conflict")
    assert "key-2" in message
    assert len([e for e in sandbox.ledger("rivya") if e["kind"] == "reserve"]) == 1


def test_replay_works_even_when_broke_or_at_the_concurrency_limit(sandbox, rivya):
    configure(sandbox, "rivya", latency=slow(processing=30), rate_limit={"max_concurrent_tasks": 1})
    first = rivya.create("held", idempotency_key="key-3").json()
    sandbox.topup("rivya", -rivya.credits())
    replay = rivya.create("held", idempotency_key="key-3")
    assert replay.status_code == 200 and replay.json()["id"] == first["id"]
    assert replay.json()["status"] == "processing"


def test_without_key_every_create_is_a_new_task(sandbox, rivya):
    ids = {rivya.create("same body").json()["id"] for _ in range(3)}
    assert len(ids) == 3 and rivya.credits() == 100_000 - 24


def test_bad_idempotency_key_is_400(rivya):
    assert_error(rivya.create(idempotency_key="k" * 300), 400, "validation_failed")


def test_concurrency_limit_is_429_with_retry_after(sandbox, rivya):
    configure(sandbox, "rivya", latency=slow(processing=0.6), rate_limit={"max_concurrent_tasks": 2})
    assert rivya.create("a").status_code == 200 and rivya.create("b").status_code == 200
    refused = rivya.create("c")
    assert_error(refused, 429, "rate_limited")
    assert refused.headers["Retry-After"] == "1"  # 0.6 s left, rounded up to whole seconds
    assert rivya.credits() == 100_000 - 16  # nothing reserved for the refused one
    time.sleep(0.7)
    assert rivya.create("c").status_code == 200
