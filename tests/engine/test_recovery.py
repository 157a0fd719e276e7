"""Crashes between paying and recording: journaled tasks are polled again, never bought twice."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.engine.steps import PromptSteps
from nbpro_pipeline.image_files import read_lineage
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.providers.base import idempotency_key
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Journal, ledger_id
from tests.engine.conftest import R1K, fingerprint, price, prompt_row, prompt_rows


def legacy_key(fingerprint: str) -> str:
    """The key an older version of the client derived (not namespaced by the storage root)."""
    return "nbpro-" + hashlib.sha256(f"rivya-idem:{fingerprint}".encode()).hexdigest()[:40]


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the engine may catch it, as with a killed process."""


def request_for(row) -> GenerationRequest:
    return GenerationRequest(
        prompt=row.prompt, aspect_ratio=row.aspect_ratio, resolution=R1K, output_format=row.output_format
    )


async def test_a_crash_after_the_task_id_is_journaled_resumes_without_resubmitting(harness, provider, monkeypatch):
    rows = prompt_rows(4)
    barrier = asyncio.Barrier(len(rows))

    async def crash(self, *args, **kwargs):
        await barrier.wait()  # every task is created and journaled; none is stored or in the ledger
        raise SimulatedCrash

    monkeypatch.setattr(PromptSteps, "fetch_and_place", crash)
    with pytest.raises(SimulatedCrash):
        await harness.run(provider, rows, run_id="run-crashed")
    monkeypatch.undo()
    assert harness.rows() == []
    journal = harness.journal(provider)
    journaled = {fp: entries[-1].task_id for fp, entries in journal.tasks.items()}
    assert set(journaled) == {fingerprint(r, provider) for r in rows}
    assert harness.tasks_created(provider) == 4

    report = await harness.run(provider, rows, run_id="run-2")
    assert (report.resumed, report.submitted, report.succeeded) == (4, 0, 4)
    assert harness.tasks_created(provider) == 4
    for r in harness.rows():
        assert r["task_id"] == journaled[r["fingerprint"]] and r["final_cost"] == price(provider)
        assert read_lineage(r["image_uri"]).task_id == r["task_id"]
    harness.assert_reconciles(provider)

    third = await harness.run(provider, rows, run_id="run-3")  # resolved now: nothing to resume
    assert (third.resumed, third.submitted, third.already_done) == (0, 0, 4)


async def journal_a_task_by_hand(harness, provider, row):
    """What a crashed run leaves behind: an intent and a task id, and no ledger row."""
    fp = fingerprint(row, provider)
    key = idempotency_key(ledger_id(harness.storage), fp, 0) if provider is Provider.RIVYA else None
    async with harness.client(provider) as client:
        submitted = await client.submit(request_for(row), idempotency_key=key)
    journal = Journal(harness.storage, provider, R1K, "run-crashed")
    journal.add(
        "intent",
        fp,
        idempotency_key=key,
        row=row.model_dump(mode="json"),
        request=request_for(row).model_dump(mode="json"),
    )
    journal.add("task", fp, task_id=submitted.task_id, idempotency_key=key)
    await journal.sync()
    return submitted.task_id


async def test_a_journaled_task_is_polled_and_recorded_by_the_next_run(harness, provider):
    rows = prompt_rows(3)
    task_id = await journal_a_task_by_hand(harness, provider, rows[1])
    report = await harness.run(provider, rows, run_id="run-2")
    assert (report.resumed, report.submitted, report.succeeded) == (1, 2, 3)
    assert harness.tasks_created(provider) == 3
    resumed = next(r for r in harness.rows() if r["prompt_id"] == rows[1].prompt_id)
    assert resumed["task_id"] == task_id and resumed["status"] == "succeeded"
    assert resumed["fingerprint"] == fingerprint(rows[1], provider)
    harness.assert_reconciles(provider)


async def test_a_journaled_task_whose_row_left_the_table_is_still_recorded(harness, provider):
    row = prompt_row("gone", "this row was deleted from the table after the crash")
    task_id = await journal_a_task_by_hand(harness, provider, row)
    report = await harness.run(provider, [], run_id="run-2")
    assert (report.resumed, report.eligible, report.succeeded, report.submitted) == (1, 1, 1, 0)
    (rec,) = harness.rows()
    assert (rec["prompt_id"], rec["task_id"], rec["status"]) == ("gone", task_id, "succeeded")
    assert read_lineage(rec["image_uri"]).prompt_id == "gone"
    assert harness.tasks_created(provider) == 1
    harness.assert_reconciles(provider)


@pytest.mark.parametrize("keys", ["namespaced", "legacy"])
async def test_rivya_intent_without_a_task_id_is_replayed_not_paid_twice(harness, keys):
    """Crash between sending the create and journaling its answer: the engine's resubmit carries the
    same Idempotency-Key, so Rivya answers with the original task and bills nothing new; also when the
    intent was journaled by a version whose keys had no ledger id in them (an upgrade mid-crash)."""
    provider = Provider.RIVYA
    rows = prompt_rows(2)
    fp = fingerprint(rows[0], provider)
    key = idempotency_key(ledger_id(harness.storage), fp, 0) if keys == "namespaced" else legacy_key(fp)
    async with harness.client(provider) as client:
        lost = await client.submit(request_for(rows[0]), idempotency_key=key)  # the answer is "lost"
    journal = Journal(harness.storage, provider, R1K, "run-crashed")
    journal.add("intent", fp, idempotency_key=key, row=rows[0].model_dump(mode="json"))
    await journal.sync()
    billed_before = harness.sandbox_total(provider)
    assert billed_before == 8

    report = await harness.run(provider, rows, run_id="run-2")
    assert report.succeeded == 2 and report.resumed == 0
    assert harness.tasks_created(provider) == 2  # one replayed, one new
    rec = next(r for r in harness.rows() if r["prompt_id"] == rows[0].prompt_id)
    assert rec["task_id"] == lost.task_id and rec["idempotency_key"] == key
    reserves = [e for e in harness.sandbox.ledger("rivya") if e["task_id"] == lost.task_id and e["kind"] == "reserve"]
    assert len(reserves) == 1
    assert harness.sandbox_total(provider) == 16
    harness.assert_reconciles(provider)


async def test_a_failed_download_is_fetched_again_later_without_paying_twice(harness, provider):
    harness.configure(provider, faults={"drop_download": 1.0})
    rows = prompt_rows(3)
    first = await harness.run(provider, rows, run_id="run-1")
    assert first.failures_by_reason == {"download_failed": 3}
    assert first.final_cost == 3 * price(provider)  # paid for, not yet in hand
    harness.assert_reconciles(provider)

    harness.configure(provider, faults={"drop_download": 0.0})
    second = await harness.run(provider, rows, run_id="run-2")
    assert (second.resumed, second.submitted, second.succeeded) == (3, 0, 3)
    assert second.final_cost == 0  # the earlier rows already hold the charge
    assert harness.tasks_created(provider) == 3
    assert all(r["final_cost"] == 0 for r in harness.rows(run_id="run-2"))
    harness.assert_reconciles(provider)


async def test_a_task_past_its_deadline_is_recorded_and_settled_by_a_later_run(harness, provider):
    harness.configure(provider, latency={"processing": {"dist": "fixed", "value": 1.0}})
    rows = prompt_rows(2)
    impatient = EngineSettings(max_in_flight=4, progress_interval_s=60, task_deadline_s=0.3)
    first = await harness.run(provider, rows, run_id="run-1", settings=impatient)
    assert first.failed == 2 and first.succeeded == 0
    harness.assert_reconciles(provider)
    if provider is Provider.RIVYA:  # no cancel: the task lives on, its reservation is on the ledger
        assert first.failures_by_reason == {"deadline_exceeded": 2}
        assert first.final_cost == 2 * price(provider)
    else:  # cancelled while processing: OdiRouter bills it
        assert first.failures_by_reason == {"deadline_cancelled": 2}
        assert first.final_cost == 2 * price(provider)

    harness.configure(provider, latency={"processing": {"dist": "fixed", "value": 0.0}})
    second = await harness.run(provider, rows, run_id="run-2")
    assert second.succeeded == 2
    if provider is Provider.RIVYA:  # the same tasks, polled to their end: nothing more to pay
        assert (second.resumed, second.submitted, second.final_cost) == (2, 0, 0)
        assert harness.tasks_created(provider) == 2
    else:  # a cancelled task is over: new ones are bought
        assert (second.resumed, second.submitted) == (0, 2)
        assert harness.tasks_created(provider) == 4
    harness.assert_reconciles(provider)


@pytest.mark.parametrize("rows_still_in_the_table", [True, False])
async def test_pruning_the_journal_after_a_crash_keeps_what_the_next_run_resumes(
    harness, provider, monkeypatch, rows_still_in_the_table
):
    """Crash with every task journaled and none booked, compact (index + journal pruning), run again:
    the tasks are polled, never resubmitted, also as orphans whose prompts left the table (their intents
    carry the row and request); once booked, the next pruning leaves nothing of them."""
    from nbpro_pipeline.storage import compact_ledger, read_journal

    rows = prompt_rows(4)
    done = prompt_rows(6)[4:]
    await harness.run(provider, done, run_id="run-0")  # booked: their entries are pruned away
    barrier = asyncio.Barrier(len(rows))

    async def crash(self, *args, **kwargs):
        await barrier.wait()
        raise SimulatedCrash

    monkeypatch.setattr(PromptSteps, "fetch_and_place", crash)
    with pytest.raises(SimulatedCrash):
        await harness.run(provider, rows, run_id="run-crashed")
    monkeypatch.undo()
    result = compact_ledger(harness.storage, min_age_s=0)
    cell = next(c for c in result.cells if c.cell == f"{provider.value}|1K")
    assert cell.journal_entries is not None and cell.journal_entries[1] == 8  # 4 tasks and their intents
    journal = read_journal(harness.storage, provider, R1K)
    assert set(journal.tasks) == set(journal.intents) == {fingerprint(r, provider) for r in rows}

    report = await harness.run(provider, rows if rows_still_in_the_table else [], run_id="run-2")
    assert (report.resumed, report.submitted, report.succeeded) == (4, 0, 4)
    assert harness.tasks_created(provider) == 6
    harness.assert_reconciles(provider)
    assert read_journal(harness.storage, provider, R1K).tasks == {}  # run-2 pruned what it finished
    third = await harness.run(provider, rows + done, run_id="run-3")
    assert (third.resumed, third.submitted, third.already_done) == (0, 0, 6)
