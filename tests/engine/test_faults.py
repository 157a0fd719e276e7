"""Transport trouble at the provider: retried where that is safe, recorded honestly where it is not."""

from __future__ import annotations

import os

from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.providers.registry import Provider
from tests.engine.conftest import KEEP_JOURNAL, price, prompt_row, prompt_rows


async def test_server_errors_are_retried_and_every_row_succeeds(harness, provider):
    harness.configure(provider, faults={"http_5xx": 0.3})
    report = await harness.run(provider, prompt_rows(12))
    assert report.succeeded == 12
    assert report.client_counters.get("retries", 0) > 0
    assert harness.tasks_created(provider) == 12  # a 5xx answer created nothing: no duplicate tasks
    harness.assert_reconciles(provider)


async def test_rate_limits_slow_the_cell_down_but_lose_nothing(harness, provider):
    harness.configure(provider, rate_limit={"requests_per_s": 200, "burst": 4, "retry_after_s": 0.02})
    report = await harness.run(provider, prompt_rows(10))
    assert report.succeeded == 10
    assert report.client_counters.get("rate_limited", 0) > 0
    assert harness.tasks_created(provider) == 10
    harness.assert_reconciles(provider)


async def test_rivya_creates_cut_off_after_the_task_exists_are_replayed_not_rebought(harness):
    harness.configure(Provider.RIVYA, faults={"drop_after_processing": 0.5})
    report = await harness.run(Provider.RIVYA, prompt_rows(10))
    assert report.succeeded == 10
    assert harness.tasks_created(Provider.RIVYA) == 10  # the Idempotency-Key made every retry a replay
    harness.assert_reconciles(Provider.RIVYA)


async def test_odirouter_submits_without_an_answer_are_recorded_as_unknown_and_redone_later(harness):
    provider = Provider.ODIROUTER
    harness.configure(provider, faults={"drop_connection": 0.4})
    rows = prompt_rows(12)
    first = await harness.run(provider, rows, run_id="run-1", settings=KEEP_JOURNAL)
    unknown = first.failures_by_reason.get("submit_outcome_unknown", 0)
    # the cuts hit polls too: a task whose polls were cut on every retry (~2% of runs) is paid and held,
    # and the next run polls it again instead of buying it twice
    held = first.failures_by_reason.get("poll_failed", 0)
    assert set(first.failures_by_reason) <= {"submit_outcome_unknown", "poll_failed"}, first.failures_by_reason
    assert first.succeeded + unknown + held == 12 and first.succeeded > 0
    for r in harness.rows(run_id="run-1"):
        if r["error_code"] == "submit_outcome_unknown":
            assert r["status"] == "failed" and r["task_id"] is None and r["final_cost"] == 0
    assert sum(harness.journal(provider).unknown.values()) == unknown
    harness.assert_reconciles(provider)  # a connection dropped before the route ran created nothing

    harness.configure(provider, faults={"drop_connection": 0.0})
    second = await harness.run(provider, rows, run_id="run-2")
    assert (second.already_done, second.submitted, second.resumed) == (first.succeeded, unknown, held)
    assert second.succeeded == unknown + held
    harness.assert_reconciles(provider)


async def test_results_do_not_depend_on_concurrency(harness, provider):
    rows = prompt_rows(8)
    serial = EngineSettings(max_in_flight=1, progress_interval_s=60, ledger_flush_rows=3)
    report = await harness.run(provider, rows, settings=serial)
    assert report.succeeded == 8 and report.ledger_parts == 3  # 3 + 3 + the final 2
    harness.assert_reconciles(provider)


async def test_journal_group_commit_and_the_odirouter_submit_window_are_reported(harness, provider):
    report = await harness.run(provider, prompt_rows(20), settings=KEEP_JOURNAL)
    assert report.succeeded == 20
    assert 0 < report.journal_segments < 2 * 20  # shared flushes, not one per entry
    assert sum(len(v) for v in harness.journal(provider).tasks.values()) == 20
    if provider is Provider.ODIROUTER:
        assert report.submit_window_ms_max is not None and report.submit_window_ms_max > 0
    else:
        assert report.submit_window_ms_max is None


async def test_the_same_prompt_id_with_different_prompts_keeps_both_images(harness, provider):
    rows = [prompt_row("dup", "first prompt"), prompt_row("dup", "second prompt", row_number=2)]
    report = await harness.run(provider, rows)
    assert report.succeeded == 2
    uris = {r["image_uri"] for r in harness.rows()}
    assert len(uris) == 2 and all(os.path.exists(u) for u in uris)
    assert harness.ledger_total(provider) == 2 * price(provider)
