"""OdiRouter has no idempotency key: a crash between "submit sent" and "task id journaled" can buy that
request twice. The engine bounds how many submits are in that window at once, whatever max_in_flight is."""

from __future__ import annotations

import asyncio

from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.providers.registry import Provider
from tests.engine.conftest import prompt_rows


async def _max_concurrent_submits(harness, provider: Provider, settings: EngineSettings) -> tuple[int, object]:
    """Run a cell whose submits are slowed down, and return how many were ever unanswered at once."""
    in_window = peak = 0
    async with harness.client(provider) as client:
        real_submit = client.submit

        async def slow_submit(request, *, idempotency_key=None):
            nonlocal in_window, peak
            in_window += 1
            peak = max(peak, in_window)
            try:
                await asyncio.sleep(0.02)  # the request is out, the answer not yet in
                return await real_submit(request, idempotency_key=idempotency_key)
            finally:
                in_window -= 1

        client.submit = slow_submit
        report = await harness.runner(provider, client, settings=settings).run(prompt_rows(12))
    return peak, report


async def test_odirouter_submits_in_the_unjournaled_window_are_bounded(harness):
    settings = EngineSettings(
        max_in_flight=12, max_unjournaled_submits=2, progress_interval_s=60, prune_journal_at_end=False
    )
    peak, report = await _max_concurrent_submits(harness, Provider.ODIROUTER, settings)
    assert report.succeeded == 12
    assert peak == 2
    journal = harness.journal(Provider.ODIROUTER)
    assert sum(len(v) for v in journal.tasks.values()) == 12  # every task id was made durable
    assert report.submit_window_ms_max is not None
    harness.assert_reconciles(Provider.ODIROUTER)


async def test_rivya_submits_are_not_gated_because_a_replay_is_free(harness):
    settings = EngineSettings(max_in_flight=12, max_unjournaled_submits=2, progress_interval_s=60)
    peak, report = await _max_concurrent_submits(harness, Provider.RIVYA, settings)
    assert report.succeeded == 12
    assert peak > 2
