"""Tolerant reading, strict money (providers.md section 4), over real HTTP against the sandbox set to
answer the *other* plausible way (``SandboxConfig.wire``): the clients read every shape a real server
may send, and a shape nobody knows fails loudly with the raw body and a billable snapshot, never as a
silent $0 failure. Poll counts are checked against the server's own count of status requests."""

import io
import json
import logging

import httpx
import pytest
from PIL import Image

from nbpro_pipeline.models import GenerationRequest, TaskState, pixel_size
from nbpro_pipeline.providers import (
    DeadlineExceededError,
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    OdiRouterClient,
    RivyaClient,
    UnreadableResultError,
)
from nbpro_pipeline.sandbox.wire_shapes import EXTRA_KEY
from tests.providers.conftest import FAST_POLL, FAST_RETRY, configure, entries

SLOW = {"queued": {"dist": "fixed", "value": 0.15}, "processing": {"dist": "fixed", "value": 0.15}}


def wire(sandbox, **knobs) -> None:
    sandbox.set_config({"wire": knobs})


def status_polls(sandbox, provider: str) -> int:
    return sandbox.stats()[provider]["status_polls"]


async def download(client, snapshot) -> Image.Image:
    buf = io.BytesIO()
    got = await client.fetch_result(snapshot, buf)
    assert got.bytes == len(buf.getvalue()) > 0
    return Image.open(io.BytesIO(buf.getvalue()))


# -- OdiRouter's response in fal.ai's shape -------------------------------------------------------------


async def test_fal_images_shape_is_read_and_downloaded(odirouter, sandbox):
    wire(sandbox, odirouter_response_shape="fal")
    submitted = await odirouter.submit(GenerationRequest(prompt="fal shape", aspect_ratio="16:9", resolution="2K"))
    raw = await odirouter._request("GET", f"/v1/queue/nano_banana_pro/requests/{submitted.task_id}/response")
    assert set(raw.json()) == {"images", "description"}  # really fal's shape: no outputs, no request_id
    final = await odirouter.wait(submitted.task_id)
    assert final.state is TaskState.SUCCEEDED
    (image,) = final.images
    assert (image.width, image.height) == pixel_size("16:9", "2K") and image.content_type == "image/png"
    assert (await download(odirouter, final)).size == pixel_size("16:9", "2K")
    assert [e["task_id"] for e in entries(sandbox, "odirouter")] == [submitted.task_id]


# -- any 2xx on create ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [201, 202])
async def test_creates_answered_201_or_202_are_followed(rivya, odirouter, sandbox, status):
    wire(sandbox, rivya_create_status=status, odirouter_create_status=status)
    raw = await rivya._request(
        "POST",
        "/api/v1/generations",
        json={"model": "nano-banana-pro", "prompt": "raw"},
        headers={"Idempotency-Key": "raw-1"},
    )
    assert raw.status_code == status  # the knob really changes the answer
    for client in (rivya, odirouter):
        submitted = await client.submit(GenerationRequest(prompt=f"created with {status}"))
        assert submitted.attempts == 1
        final = await client.wait(submitted.task_id)
        assert final.state is TaskState.SUCCEEDED
        assert (await download(client, final)).size == pixel_size("1:1", "1K")


# -- unknown extra fields anywhere ----------------------------------------------------------------------


async def test_extra_fields_everywhere_are_ignored(rivya, odirouter, sandbox):
    wire(sandbox, extra_fields=True)
    raw = await odirouter._request("GET", "/v1/queue/nano_banana_pro/requests/mmsu_none/status")
    assert EXTRA_KEY in raw.json()  # the sandbox really adds them (error bodies too)

    submitted = await rivya.submit(GenerationRequest(prompt="extras", resolution="2K"))
    final = await rivya.wait(submitted.task_id)
    assert final.state is TaskState.SUCCEEDED and final.credits_final == 8
    assert (await download(rivya, final)).size == pixel_size("1:1", "2K")
    assert (await rivya.balance()).amount == 100_000 - 8
    assert (await rivya.models()).data[0].id == "nano-banana-pro"
    with pytest.raises(IdempotencyConflictError) as conflict:
        await rivya.submit(GenerationRequest(prompt="other body"), idempotency_key=submitted.idempotency_key)
    assert conflict.value.code == "idempotency_conflict" and conflict.value.request_id.startswith("req_")

    odi = await odirouter.submit(GenerationRequest(prompt="extras", aspect_ratio="3:4"))
    odi_final = await odirouter.wait(odi.task_id)
    assert odi_final.state is TaskState.SUCCEEDED and odi_final.billed is True
    assert (await download(odirouter, odi_final)).size == pixel_size("3:4", "1K")
    with pytest.raises(NotFoundError, match="Request not found"):
        await odirouter.poll("mmsu_none")


# -- Rivya final_credits 0 before the task settles ------------------------------------------------------


async def test_rivya_final_credits_zero_while_unsettled_is_not_a_settled_zero(sandbox, rivya_key):
    wire(sandbox, rivya_unsettled_final_credits="zero")
    configure(sandbox, "rivya", latency={"queued": {"dist": "fixed", "value": 0.3}, "processing": SLOW["processing"]})
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=FAST_RETRY, poll=FAST_POLL) as client:
        submitted = await client.submit(GenerationRequest(prompt="unsettled"))
        raw = await client._request("GET", f"/api/v1/generations/{submitted.task_id}")
        assert raw.json()["status"] == "queued" and raw.json()["final_credits"] == 0
        assert submitted.snapshot.state is TaskState.QUEUED
        assert submitted.snapshot.credits_final is None and submitted.snapshot.credits_reserved == 8
        queued = await client.poll(submitted.task_id)
        assert queued.state is TaskState.QUEUED and queued.credits_final is None
        final = await client.wait(submitted.task_id)
    assert final.state is TaskState.SUCCEEDED and final.credits_final == 8


# -- a 422 detail as a string or a FastAPI-style list ---------------------------------------------------


@pytest.mark.parametrize("shape", ["string", "list"])
async def test_422_detail_string_or_list_names_the_field(odirouter, sandbox, shape):
    wire(sandbox, odirouter_422_detail=shape)
    # the server's own validation, bypassing the client's local checks (which would refuse first)
    response = await odirouter._request("POST", "/v1/queue/nano_banana_pro", json={"prompt": "p", "resolution": "8K"})
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str if shape == "string" else list)
    err = odirouter._error_from_response(response)
    assert isinstance(err, InvalidRequestError) and err.status_code == 422
    assert err.message.startswith("resolution:") and "body" not in err.message
    both = await odirouter._request(
        "POST", "/v1/queue/nano_banana_pro", json={"prompt": "p", "resolution": "1K", "image_size": "2K"}
    )
    assert "resolution" in odirouter._error_from_response(both).message


# -- Rivya's Idempotent-Replayed header -----------------------------------------------------------------


async def test_idempotent_replayed_header_marks_the_submitted_task(rivya, sandbox):
    request = GenerationRequest(prompt="once")
    first = await rivya.submit(request)
    second = await rivya.submit(request)
    assert (first.replayed, second.replayed) == (False, True)
    assert first.task_id == second.task_id
    assert [e["kind"] for e in entries(sandbox, "rivya")].count("reserve") == 1


# -- a shape nobody knows: loud, raw body kept, billable snapshot, real poll count -----------------------


async def test_odirouter_unknown_result_shape_raises_with_raw_body_and_billed_snapshot(sandbox, odirouter_key, caplog):
    wire(sandbox, odirouter_response_shape="unknown")
    configure(sandbox, "odirouter", latency=SLOW)
    caplog.set_level(logging.DEBUG)
    async with OdiRouterClient(sandbox.odirouter_url, odirouter_key, retry=FAST_RETRY, poll=FAST_POLL) as client:
        submitted = await client.submit(GenerationRequest(prompt="unknown shape"))
        with pytest.raises(UnreadableResultError) as info:
            await client.wait(submitted.task_id)
    err = info.value
    assert err.task_id == submitted.task_id
    assert "artifacts" in json.loads(err.raw_body)["data"]  # the body as the server sent it
    assert err.content_type.startswith("application/json")
    assert err.snapshot.state is TaskState.SUCCEEDED and err.snapshot.billed is True
    assert err.polls == status_polls(sandbox, "odirouter") and err.polls > 2
    assert [e["task_id"] for e in entries(sandbox, "odirouter")] == [submitted.task_id]  # it was billed
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(submitted.task_id in r.getMessage() for r in warnings)
    assert odirouter_key not in caplog.text and odirouter_key not in str(err)


async def test_rivya_succeeded_without_readable_result_raises_with_credits(sandbox, rivya_key, caplog):
    wire(sandbox, rivya_result_shape="unknown", rivya_unsettled_final_credits="zero")
    configure(sandbox, "rivya", latency=SLOW)
    caplog.set_level(logging.WARNING)
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=FAST_RETRY, poll=FAST_POLL) as client:
        submitted = await client.submit(GenerationRequest(prompt="unknown result"))
        with pytest.raises(UnreadableResultError) as info:
            await client.wait(submitted.task_id)
    err = info.value
    assert err.task_id == submitted.task_id and b"assets" in err.raw_body
    snap = err.snapshot
    assert snap.state is TaskState.SUCCEEDED and (snap.credits_reserved, snap.credits_final) == (8, 8)
    assert err.polls == status_polls(sandbox, "rivya") and err.polls > 2
    assert any(submitted.task_id in r.getMessage() for r in caplog.records)
    assert rivya_key not in caplog.text and rivya_key not in str(err) + repr(err)


async def test_raw_body_is_capped_at_one_mib(odirouter, sandbox):
    wire(sandbox, odirouter_response_shape="unknown")
    submitted = await odirouter.submit(GenerationRequest(prompt="cap"))
    response = httpx.Response(200, content=b"x" * (3 << 20), request=httpx.Request("GET", "http://h/r"))
    err = odirouter._unreadable(response, submitted.task_id, "test", None)
    assert len(err.raw_body) == 1 << 20


# -- every error out of wait() carries the real number of status requests -------------------------------


async def test_wait_errors_carry_the_server_counted_polls(sandbox, odirouter_key):
    configure(sandbox, "odirouter", latency={"queued": {"dist": "fixed", "value": 30}})
    async with OdiRouterClient(sandbox.odirouter_url, odirouter_key, retry=FAST_RETRY, poll=FAST_POLL) as client:
        with pytest.raises(NotFoundError) as missing:
            await client.wait("mmsu_does_not_exist")
        assert missing.value.polls == 1 == status_polls(sandbox, "odirouter")
        submitted = await client.submit(GenerationRequest(prompt="never starts"))
        with pytest.raises(DeadlineExceededError) as late:
            await client.wait(submitted.task_id, deadline_s=0.3)
    # the polls of the schedule plus the one after the cancel request, all counted by the server
    assert late.value.polls == status_polls(sandbox, "odirouter") - 1 and late.value.polls > 2
