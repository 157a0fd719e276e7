"""What a client hands the engine's admission (``attach_admission``): a 429 on create at once, every
poll's answer; and a rate-limit token taken ahead for the next call (``take_send_token``)."""

from __future__ import annotations

import pytest

from nbpro_pipeline.models import GenerationRequest, TaskState
from nbpro_pipeline.providers import OdiRouterClient, RivyaClient
from nbpro_pipeline.providers.errors import RateLimitedError
from nbpro_pipeline.providers.ratelimit import TokenBucket
from tests.providers.conftest import FAST_POLL, FAST_RETRY, configure


def _client(sandbox, provider: str, key: str):
    if provider == "rivya":
        return RivyaClient(sandbox.rivya_url, key, retry=FAST_RETRY, poll=FAST_POLL, seed=1)
    return OdiRouterClient(sandbox.odirouter_url, key, retry=FAST_RETRY, poll=FAST_POLL, seed=1)


@pytest.mark.parametrize("provider", ["rivya", "odirouter"])
async def test_an_attached_admission_gets_the_429_on_create_at_once_and_every_poll(
    sandbox, provider, rivya_key, odirouter_key
):
    configure(
        sandbox,
        provider,
        latency={"processing": {"dist": "fixed", "value": 0.3}},
        rate_limit={"max_concurrent_tasks": 1, "retry_after_s": 5},
    )
    seen = []
    async with _client(sandbox, provider, rivya_key if provider == "rivya" else odirouter_key) as client:
        client.attach_admission(seen.append)
        first = await client.submit(GenerationRequest(prompt="one"))
        with pytest.raises(RateLimitedError):
            await client.submit(GenerationRequest(prompt="two"))  # the provider is full
        assert client.counters["create_rejected"] == 1 and client.counters["retries"] == 0
        done = await client.wait(first.task_id)  # no client-wide pause: polls went on at once
        assert done.state is TaskState.SUCCEEDED
    assert [s.task_id for s in seen] == [first.task_id] * done.polls
    assert seen[-1].state.terminal and not any(s.state.terminal for s in seen[:-1])
    assert sandbox.stats()[provider]["tasks_created"] == 1


async def test_without_an_admission_a_429_on_create_is_retried_in_the_client(sandbox, rivya_key):
    configure(
        sandbox,
        "rivya",
        latency={"processing": {"dist": "fixed", "value": 0.1}},
        rate_limit={"max_concurrent_tasks": 1, "retry_after_s": 0.05},
    )
    async with _client(sandbox, "rivya", rivya_key) as client:
        await client.submit(GenerationRequest(prompt="one"))
        second = await client.submit(GenerationRequest(prompt="two"))  # waited out, as before issue 14
        assert second.attempts > 1 and client.counters["create_rejected"] == 0


async def test_a_token_taken_ahead_is_spent_by_the_next_call_not_twice(sandbox, rivya_key):
    bucket = TokenBucket(rate=0.001, burst=2)  # two tokens, and no more for a long while
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=FAST_RETRY, poll=FAST_POLL, limiter=bucket) as c:
        await c.take_send_token()
        await c.take_send_token()  # already holding one: takes no second
        assert bucket._tokens == pytest.approx(1, abs=0.01)
        await c.submit(GenerationRequest(prompt="one"))  # goes out on the token in hand
        assert bucket._tokens == pytest.approx(1, abs=0.01)
        await c.submit(GenerationRequest(prompt="two"))  # takes the last one
        assert bucket._tokens == pytest.approx(0, abs=0.01)
