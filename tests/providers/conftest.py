"""Clients wired to the per-test sandbox with fast policies, so retries and polls take milliseconds."""

import pytest

from nbpro_pipeline.providers import OdiRouterClient, PollPolicy, RetryPolicy, RivyaClient

FAST_RETRY = RetryPolicy(max_attempts=8, base_delay_s=0.01, max_delay_s=0.05)
FAST_POLL = PollPolicy(first_delay_s=0.01, factor=1.5, max_interval_s=0.05, deadline_s=15)


def configure(sandbox, provider: str, **section) -> None:
    """Change one provider's sandbox knobs at runtime (deep-merged into its config section)."""
    sandbox.set_config({provider: section})


@pytest.fixture
async def rivya(sandbox, rivya_key):
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=FAST_RETRY, poll=FAST_POLL, seed=1) as client:
        yield client


@pytest.fixture
async def odirouter(sandbox, odirouter_key):
    client = OdiRouterClient(sandbox.odirouter_url, odirouter_key, retry=FAST_RETRY, poll=FAST_POLL, seed=1)
    async with client:
        yield client


def entries(sandbox, provider: str) -> list[dict]:
    return [e for e in sandbox.ledger() if e["provider"] == provider]
