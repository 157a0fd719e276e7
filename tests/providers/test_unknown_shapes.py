"""Answers no documented or plausible shape covers, from a scripted server over real HTTP: the clients
fail loudly (raw body kept, billable snapshot when the provider said the task finished), read what they
can (an unknown error type, an unknown output part), and never turn a create into a plain failure
when a task may exist."""

import json

import pytest

from nbpro_pipeline.models import GenerationRequest, TaskState
from nbpro_pipeline.providers import (
    OdiRouterClient,
    RivyaClient,
    SubmitOutcomeUnknown,
    UnreadableResultError,
)
from tests.providers.conftest import FAST_POLL, FAST_RETRY
from tests.providers.scripted_server import Canned, ScriptedServer

Q = "/v1/queue/nano_banana_pro"
TASK = "mmsu_scripted"
STATUS = ("GET", f"{Q}/requests/{TASK}/status")
RESPONSE = ("GET", f"{Q}/requests/{TASK}/response")
COMPLETED = {"status": "COMPLETED", "request_id": TASK, "error": None, "error_type": None}
RIVYA_TASK = {
    "id": "gen_scripted",
    "model": "nano-banana-pro",
    "reserved_credits": 8,
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:07Z",
}
RIVYA_GET = ("GET", "/api/v1/generations/gen_scripted")


def canned(body, status: int = 200, **kw) -> Canned:
    return Canned(status, body if isinstance(body, bytes) else json.dumps(body).encode(), **kw)


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


@pytest.fixture
async def odi(server):
    async with OdiRouterClient(server.url, "odr_scripted_key", retry=FAST_RETRY, poll=FAST_POLL) as client:
        yield client


@pytest.fixture
async def riv(server):
    async with RivyaClient(server.url, "rvya_sk_scripted", retry=FAST_RETRY, poll=FAST_POLL) as client:
        yield client


async def test_status_answered_with_an_html_page_is_unreadable_not_a_failure(server, odi):
    server.script[STATUS] = canned(b"<html>502 from some proxy</html>", content_type="text/html")
    with pytest.raises(UnreadableResultError) as info:
        await odi.wait(TASK)
    err = info.value
    assert err.raw_body == b"<html>502 from some proxy</html>" and err.content_type.startswith("text/html")
    assert err.snapshot is None  # the client cannot tell whether it finished: kept, not booked as anything
    assert err.polls == server.calls[STATUS] == 1


async def test_submit_without_request_id_is_an_unknown_outcome_not_retried(server, odi):
    server.script[("POST", Q)] = canned({"state": "accepted", "queue": "default"}, 201)
    with pytest.raises(SubmitOutcomeUnknown, match="request_id"):
        await odi.submit(GenerationRequest(prompt="p"))
    assert server.calls[("POST", Q)] == 1  # a retry could pay twice
    server.script[("POST", Q)] = canned({"id": "elsewhere", "state": "accepted"}, 201)
    assert (await odi.submit(GenerationRequest(prompt="p"))).task_id == "elsewhere"  # an id under another key


@pytest.mark.parametrize(
    "body",
    [
        {"images": []},
        {"images": [{"id": "img_1", "content_type": "image/png"}]},
        {"request_id": TASK, "outputs": [{"type": "text", "text": "no image after all http://cdn/x.png"}]},
        {"result": {"asset_id": "ast_1"}, "status_url": "http://cdn/x.png"},
        b"not json at all",
    ],
)
async def test_completed_without_a_downloadable_image_is_unreadable_and_billed(server, odi, body):
    server.script[STATUS] = canned(COMPLETED)
    server.script[RESPONSE] = canned(body)
    with pytest.raises(UnreadableResultError) as info:
        await odi.wait(TASK)
    err = info.value
    assert err.raw_body == (body if isinstance(body, bytes) else json.dumps(body).encode())
    assert err.snapshot.state is TaskState.SUCCEEDED and err.snapshot.billed is True
    assert err.task_id == TASK and err.polls == server.calls[STATUS] == 1


async def test_unknown_error_type_and_unknown_output_parts_are_read(server, odi):
    server.script[STATUS] = canned({**COMPLETED, "error": {"reason": "nsfw"}, "error_type": "NSFW_FILTERED"})
    failed = await odi.wait(TASK)
    assert failed.state is TaskState.FAILED and failed.error_code == "NSFW_FILTERED" and "nsfw" in failed.error_message
    assert failed.billed is False
    server.script[STATUS] = canned(COMPLETED)
    url = f"{server.url}/cdn/x.png"
    server.script[RESPONSE] = canned(
        {"outputs": [{"type": "reasoning", "steps": 3}, {"type": "image", "url": url, "width": None, "height": None}]}
    )
    done = await odi.wait(TASK)
    assert done.state is TaskState.SUCCEEDED and [i.url for i in done.images] == [url]


@pytest.mark.parametrize(
    "result", [None, {"primary_url": None, "urls": []}, {"assets": [{"asset_id": "ast_1"}]}, {"files": ["x"]}]
)
async def test_rivya_succeeded_without_readable_result_is_unreadable_with_credits(server, riv, result):
    server.script[RIVYA_GET] = canned({**RIVYA_TASK, "status": "succeeded", "final_credits": 8, "result": result})
    with pytest.raises(UnreadableResultError) as info:
        await riv.wait("gen_scripted")
    snap = info.value.snapshot
    assert (snap.state, snap.credits_reserved, snap.credits_final) == (TaskState.SUCCEEDED, 8, 8)
    assert snap.run_s == 7.0 and info.value.polls == server.calls[RIVYA_GET] == 1


async def test_rivya_failed_with_an_odd_error_object_is_still_a_failure(server, riv):
    server.script[RIVYA_GET] = canned(
        {**RIVYA_TASK, "status": "failed", "final_credits": 0, "result": None, "error": "model overloaded"}
    )
    failed = await riv.wait("gen_scripted")
    assert failed.state is TaskState.FAILED and failed.credits_final == 0 and failed.error_message == "model overloaded"


async def test_rivya_create_answers(server, riv):
    create = ("POST", "/api/v1/generations")
    # a replay of a finished task whose result is unreadable: followed up by wait(), not lost
    server.script[create] = canned(
        {**RIVYA_TASK, "status": "succeeded", "final_credits": 8, "result": {"x": 1}},
        headers={"Idempotent-Replayed": "true"},
    )
    submitted = await riv.submit(GenerationRequest(prompt="p"))
    assert submitted.task_id == "gen_scripted" and submitted.replayed and submitted.snapshot is None
    server.script[create] = canned(b"<html>gateway</html>", 202, content_type="text/html")
    with pytest.raises(SubmitOutcomeUnknown):
        await riv.submit(GenerationRequest(prompt="p"))
