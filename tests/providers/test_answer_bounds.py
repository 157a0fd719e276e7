"""Bounds on what a provider may send, against hostile servers on loopback: an endless result stops at
its cap, an over-long ``Content-Length`` is refused before a byte is read, a huge poll answer is not read
whole, a trickling answer cannot keep a task past its deadline, and an id with path characters never
reaches a URL."""

from __future__ import annotations

import asyncio
import io
import json
import resource
import time

import pytest
from aiohttp import web

from nbpro_pipeline.models import GenerationRequest
from nbpro_pipeline.models.common import TaskState
from nbpro_pipeline.providers import (
    AnswerTooLargeError,
    DeadlineExceededError,
    OdiRouterClient,
    RivyaClient,
    UnsafeTaskIdError,
)
from nbpro_pipeline.providers.base import ResultImage, TaskSnapshot
from nbpro_pipeline.providers.policies import AnswerBounds, PollPolicy
from tests.providers.conftest import FAST_POLL, FAST_RETRY
from tests.providers.http_servers import Origin, json_answer

MiB = 1024 * 1024
BOUNDS = AnswerBounds(max_api_body_bytes=2 * MiB, max_image_bytes=4 * MiB, download_timeout_s=3)


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "image/png"})
    await response.prepare(request)
    chunk = b"\0" * (256 * 1024)
    for _ in range(10_000):  # 2.5 GB if nobody stops reading
        await response.write(chunk)
    return response


async def declared_huge(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "image/png", "Content-Length": str(600 * MiB)})
    await response.prepare(request)
    await response.write(b"\0" * 1024)
    return response


async def trickle(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for byte in b'{"id": "gen_1", "status": "processing"}':
        await response.write(bytes([byte]))
        await asyncio.sleep(0.5)
    return response


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def succeeded(url: str) -> TaskSnapshot:
    return TaskSnapshot(provider="odirouter", task_id="t1", state=TaskState.SUCCEEDED, images=(ResultImage(url=url),))


async def test_an_endless_result_stops_at_the_cap_within_seconds():
    async with (
        Origin({("GET", "/img.png"): endless}) as origin,
        OdiRouterClient(origin.url, "k", retry=FAST_RETRY, bounds=BOUNDS) as client,
    ):
        sink, before, started = io.BytesIO(), rss_mb(), time.monotonic()
        with pytest.raises(AnswerTooLargeError, match="cap"):
            await client.fetch_result(succeeded(f"{origin.url}/img.png"), sink)
    assert time.monotonic() - started < 10
    assert sink.tell() <= BOUNDS.max_image_bytes  # never more than the cap written
    assert rss_mb() - before < 100


async def test_a_declared_length_over_the_cap_is_refused_at_once():
    async with (
        Origin({("GET", "/img.png"): declared_huge}) as origin,
        OdiRouterClient(origin.url, "k", retry=FAST_RETRY, bounds=BOUNDS) as client,
    ):
        sink = io.BytesIO()
        with pytest.raises(AnswerTooLargeError, match=str(600 * MiB)):
            await client.fetch_result(succeeded(f"{origin.url}/img.png"), sink)
    assert sink.tell() == 0


async def test_a_huge_poll_answer_is_not_read_whole():
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"id": "gen_1", "status": "processing", "pad": "')
        for _ in range(2400):  # 600 MB
            await response.write(b"x" * (256 * 1024))
        return response

    async with (
        Origin({("GET", "/api/v1/generations/gen_1"): huge}) as origin,
        RivyaClient(origin.url, "rvya_sk_k", retry=FAST_RETRY, bounds=BOUNDS) as client,
    ):
        before, started = rss_mb(), time.monotonic()
        with pytest.raises(AnswerTooLargeError):
            await client.poll("gen_1")
    assert time.monotonic() - started < 10 and rss_mb() - before < 100


async def test_a_trickling_answer_cannot_keep_a_task_past_its_deadline():
    async with Origin({("GET", "/api/v1/generations/gen_1"): trickle}) as origin:
        poll = PollPolicy(first_delay_s=0, max_interval_s=0.1, cancel_timeout_s=1)
        async with RivyaClient(origin.url, "rvya_sk_k", retry=FAST_RETRY, poll=poll) as client:
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError):
                await client.wait("gen_1", deadline_s=1.5)
    assert time.monotonic() - started < 4  # the answer alone would take 20 s


@pytest.mark.parametrize("task_id", ["../../admin", "a/b", "..", "x y"])
async def test_an_id_with_path_characters_never_reaches_a_url(task_id):
    async with Origin({}) as origin, RivyaClient(origin.url, "rvya_sk_k", retry=FAST_RETRY, poll=FAST_POLL) as client:
        with pytest.raises(UnsafeTaskIdError):
            await client.poll(task_id)
    assert origin.seen == []


async def test_an_id_is_url_quoted_and_followed_urls_stay_on_the_api_origin():
    body = json.dumps({"request_id": "r:1~x", "status_url": "https://evil.example/steal"})
    async with Origin({}) as origin:

        async def status(request: web.Request) -> web.Response:
            return web.json_response({"status": "IN_QUEUE", "request_id": "r:1~x"})

        origin.routes[("POST", "/v1/queue/nano_banana_pro")] = json_answer(body)
        origin.routes[("GET", "/v1/queue/nano_banana_pro/requests/r:1~x/status")] = status
        async with OdiRouterClient(origin.url, "k", retry=FAST_RETRY, poll=FAST_POLL) as client:
            submitted = await client.submit(GenerationRequest(prompt="p"))
            snap = await client.poll(submitted.handle)
    assert snap.state is TaskState.QUEUED
    assert [s.path for s in origin.seen][-1] == "/v1/queue/nano_banana_pro/requests/r:1~x/status"
