"""OdiRouterClient against the sandbox: the queue flow, cancel on deadline, and the rule that a
submit is retried only when nothing can have been created."""

import asyncio
import io
import logging

import httpx
import pytest
from PIL import Image

from nbpro_pipeline.models import GenerationRequest, TaskState, pixel_size
from nbpro_pipeline.providers import (
    AuthError,
    CancelOutcome,
    DeadlineExceededError,
    InsufficientFundsError,
    InvalidRequestError,
    NotFoundError,
    OdiRouterClient,
    PollPolicy,
    RetryPolicy,
    SubmitOutcomeUnknown,
    UnsupportedOperationError,
)
from tests.providers.conftest import FAST_POLL, FAST_RETRY, configure, entries


async def test_submit_status_response_download(odirouter, sandbox):
    request = GenerationRequest(prompt="a glass of water", aspect_ratio="9:16", resolution="1K")
    submitted = await odirouter.submit(request)
    assert submitted.task_id.startswith("mmsu_") and submitted.idempotency_key is None
    final = await odirouter.wait(submitted.task_id)
    assert final.state is TaskState.SUCCEEDED
    assert (final.images[0].width, final.images[0].height) == pixel_size("9:16", "1K")
    buf = io.BytesIO()
    got = await odirouter.fetch_result(final, buf)
    assert got.content_type.startswith("image/png") and got.bytes == len(buf.getvalue())
    assert Image.open(io.BytesIO(buf.getvalue())).size == pixel_size("9:16", "1K")
    charges = entries(sandbox, "odirouter")
    assert [(e["task_id"], e["kind"], e["amount"], e["unit"]) for e in charges] == [
        (submitted.task_id, "charge", 0.15, "usd")
    ]


async def test_4k_costs_030_and_failures_are_free(odirouter, sandbox):
    ok = await odirouter.submit(GenerationRequest(prompt="big", resolution="4K"))
    await odirouter.wait(ok.task_id)
    configure(sandbox, "odirouter", faults={"task_failed": {"CONTENT_BLOCKED": 1.0}})
    bad = await odirouter.submit(GenerationRequest(prompt="blocked"))
    failed = await odirouter.wait(bad.task_id)
    assert failed.state is TaskState.FAILED and failed.error_code == "CONTENT_BLOCKED" and failed.error_message
    assert {e["task_id"]: e["amount"] for e in entries(sandbox, "odirouter")} == {ok.task_id: 0.30}


async def test_deadline_cancels_a_queued_task_for_free(sandbox, odirouter_key):
    configure(sandbox, "odirouter", latency={"queued": {"dist": "fixed", "value": 30}})
    async with OdiRouterClient(sandbox.odirouter_url, odirouter_key, retry=FAST_RETRY, poll=FAST_POLL) as client:
        submitted = await client.submit(GenerationRequest(prompt="slow queue"))
        with pytest.raises(DeadlineExceededError) as info:
            await client.wait(submitted.task_id, deadline_s=0.3)
        assert info.value.task_id == submitted.task_id
        assert info.value.cancel_status == CancelOutcome.REQUESTED.value
        after = await client.poll(submitted.task_id)
    assert after.state is TaskState.FAILED and after.error_code == "CANCELED"
    assert entries(sandbox, "odirouter") == []  # cancelled in queue: free


async def test_deadline_cancels_a_running_task_which_is_billed(sandbox, odirouter_key):
    configure(
        sandbox,
        "odirouter",
        latency={"queued": {"dist": "fixed", "value": 0}, "processing": {"dist": "fixed", "value": 30}},
    )
    async with OdiRouterClient(sandbox.odirouter_url, odirouter_key, retry=FAST_RETRY, poll=FAST_POLL) as client:
        submitted = await client.submit(GenerationRequest(prompt="slow model"))
        with pytest.raises(DeadlineExceededError):
            await client.wait(submitted.task_id, deadline_s=0.3)
        assert (await client.poll(submitted.task_id)).error_code == "CANCELED"
        assert await client.cancel(submitted.task_id) is CancelOutcome.ALREADY_COMPLETED
        assert await client.cancel("mmsu_unknown") is CancelOutcome.NOT_FOUND
    await asyncio.sleep(0.2)  # let the sandbox settle the cancellation
    assert [(e["task_id"], e["amount"]) for e in entries(sandbox, "odirouter")] == [(submitted.task_id, 0.15)]


async def test_submit_never_retried_after_the_request_left(sandbox, odirouter_key):
    """A dropped answer to a submit may hide a billed task: surface it, do not resubmit."""
    configure(sandbox, "odirouter", faults={"drop_after_processing": 1.0})
    async with OdiRouterClient(sandbox.odirouter_url, odirouter_key, retry=FAST_RETRY, poll=FAST_POLL) as client:
        with pytest.raises(SubmitOutcomeUnknown):
            await client.submit(GenerationRequest(prompt="ambiguous"))
        assert client.counters["requests"] == 1
    stats = sandbox.stats()
    assert stats["odirouter"]["tasks_created"] == 1


async def test_submit_retried_on_429_and_5xx_without_duplicates(sandbox, odirouter_key):
    configure(sandbox, "odirouter", rate_limit={"retry_after_s": 0.01}, faults={"http_5xx": 0.3, "rate_limited": 0.3})
    retry = RetryPolicy(max_attempts=12, base_delay_s=0.005, max_delay_s=0.02)
    async with OdiRouterClient(sandbox.odirouter_url, odirouter_key, retry=retry, poll=FAST_POLL) as client:
        tasks = await asyncio.gather(*(client.submit(GenerationRequest(prompt=f"q{i}")) for i in range(25)))
        assert client.counters["retries"] > 0
    assert len({t.task_id for t in tasks}) == 25
    assert sandbox.stats()["odirouter"]["tasks_created"] == 25


async def test_connect_error_on_submit_is_retried():
    """Nothing listens: the request provably never reached a server, so repeating it is safe."""
    retry = RetryPolicy(max_attempts=3, base_delay_s=0.001)
    async with OdiRouterClient("http://127.0.0.1:9/model", "k", retry=retry) as client:
        with pytest.raises(Exception) as info:
            await client.submit(GenerationRequest(prompt="p"))
        assert client.counters["requests"] == 3
    assert not isinstance(info.value, SubmitOutcomeUnknown)


async def test_read_timeout_on_submit_is_unknown_outcome():
    """A server that takes the request and never answers: the submit may have been created, so the
    client must say so instead of sending it again."""
    received = []

    async def silent(reader, writer):
        received.append(await reader.read(65536))
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # only the answer is slow: connecting (and the pool slot, aiohttp's `connect` budget) gets seconds, so a
        # loaded machine cannot time out before the request leaves, which is retried truthfully as never sent
        timeout = httpx.Timeout(0.2, connect=5.0, pool=5.0)
        async with OdiRouterClient(f"http://127.0.0.1:{port}/model", "k", retry=FAST_RETRY, timeout=timeout) as c:
            with pytest.raises(SubmitOutcomeUnknown, match="no answer"):
                await c.submit(GenerationRequest(prompt="slow answer"))
            assert c.counters["requests"] == 1
    finally:
        server.close()
    assert len(received) == 1 and received[0].startswith(b"POST /model/v1/queue/nano_banana_pro")


async def test_error_envelopes(sandbox, odirouter_key, caplog):
    caplog.set_level(logging.DEBUG)
    configure(sandbox, "odirouter", auth={"allowed_keys": [odirouter_key]})
    async with OdiRouterClient(sandbox.odirouter_url, "odr_wrong_key_777", retry=FAST_RETRY) as bad:
        with pytest.raises(AuthError) as info:
            await bad.submit(GenerationRequest(prompt="p"))
    assert (info.value.status_code, info.value.code) == (401, "UNAUTHORIZED")
    assert "odr_wrong_key_777" not in str(info.value) + repr(info.value) + caplog.text

    async with OdiRouterClient(sandbox.odirouter_url, odirouter_key, retry=FAST_RETRY, poll=FAST_POLL) as client:
        with pytest.raises(NotFoundError) as info:
            await client.poll("mmsu_nope")
        assert "Request not found" in info.value.message
        # the server's own validation (422 detail), bypassing the client's local checks
        response = await client._request("POST", "/v1/queue/nano_banana_pro", json={"prompt": "p", "resolution": "8K"})
        err = client._error_from_response(response)
        assert isinstance(err, InvalidRequestError) and err.status_code == 422 and "resolution" in err.message
        with pytest.raises(InvalidRequestError, match="auto"):
            await client.submit(GenerationRequest(prompt="p", aspect_ratio="auto"))
        with pytest.raises(UnsupportedOperationError):
            await client.upload_reference(b"\x89PNG")
        sandbox.topup("odirouter", -999.95)  # leaves $0.05, less than one image
        with pytest.raises(InsufficientFundsError) as info:
            await client.submit(GenerationRequest(prompt="p"))
        assert (info.value.status_code, info.value.code) == (402, "INSUFFICIENT_BALANCE")


async def test_rate_limit_pauses_every_request_of_the_client(sandbox, odirouter_key):
    configure(sandbox, "odirouter", rate_limit={"max_concurrent_tasks": 2, "retry_after_s": 0.2})
    async with OdiRouterClient(
        sandbox.odirouter_url,
        odirouter_key,
        retry=RetryPolicy(max_attempts=30, base_delay_s=0.01),
        poll=PollPolicy(first_delay_s=0.01, max_interval_s=0.05),
    ) as client:
        configure(sandbox, "odirouter", latency={"processing": {"dist": "fixed", "value": 0.3}})

        async def one(i):
            s = await client.submit(GenerationRequest(prompt=f"c{i}"))
            return await client.wait(s.task_id)

        finals = await asyncio.gather(*(one(i) for i in range(6)))
        assert all(f.state is TaskState.SUCCEEDED for f in finals)
        assert client.counters["rate_limited"] > 0
    assert sandbox.stats()["odirouter"]["tasks_created"] == 6


class _SlowCancel(httpx.AsyncHTTPTransport):
    """Real HTTP to the sandbox, but a cancel leaves late: the task finishes while it is on its way."""

    async def handle_async_request(self, request):
        if request.method == "PUT":
            await asyncio.sleep(2.0)
        return await super().handle_async_request(request)


async def test_deadline_keeps_a_result_that_finished_before_the_cancel(sandbox, odirouter_key):
    configure(
        sandbox,
        "odirouter",
        latency={"queued": {"dist": "fixed", "value": 0}, "processing": {"dist": "fixed", "value": 1.0}},
    )
    poll = PollPolicy(first_delay_s=0.02, factor=1, max_interval_s=0.02)
    async with OdiRouterClient(
        sandbox.odirouter_url, odirouter_key, retry=FAST_RETRY, poll=poll, transport=_SlowCancel()
    ) as client:
        submitted = await client.submit(GenerationRequest(prompt="finishes during the cancel"))
        final = await client.wait(submitted.task_id, deadline_s=0.05)
        assert client.counters["cancel_already_completed"] == 1
        assert final.state is TaskState.SUCCEEDED and final.images  # paid for, so kept
        buf = io.BytesIO()
        await client.fetch_result(final, buf)
    assert Image.open(io.BytesIO(buf.getvalue())).size == pixel_size("1:1", "1K")
    assert [(e["task_id"], e["amount"]) for e in entries(sandbox, "odirouter")] == [(submitted.task_id, 0.15)]
