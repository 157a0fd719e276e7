"""The provider seam, proved: FakeCo (defined only in ``tests/engine/fakeco.py``) runs through the
unchanged engine, journal, ledger and audit checks, including a crash-resume and an unreadable result."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from nbpro_pipeline.engine import EngineSettings, RunInfo, run_cell
from nbpro_pipeline.engine.steps import PromptSteps
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.provenance.xmp import IPTC_AI_FIELDS, read_xmp
from nbpro_pipeline.providers.base import idempotency_key
from nbpro_pipeline.storage import Storage, ledger_id, read_journal, read_ledger
from tests.cell.audit import audit
from tests.engine.conftest import prompt_row, prompt_rows
from tests.engine.fakeco import NAME, PRICE, RAW_BODY, FakeCoClient, FakeCoServer

R1K = Resolution.R1K
SETTINGS = EngineSettings(
    max_in_flight=4, progress_interval_s=60, ledger_flush_interval_s=60, prune_journal_at_end=False
)


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in the engine may catch it, as with a killed process."""


async def run(storage: Storage, server: FakeCoServer, rows, run_id: str):
    return await run_cell(
        rows,
        client=lambda: FakeCoClient(server),
        provider=NAME,
        resolution=R1K,
        storage=storage,
        run=RunInfo(run_id=run_id, partition_key=f"{NAME}|1K", pipeline_version="test"),
        settings=SETTINGS,
    )


def ledger_rows(storage: Storage) -> list[dict]:
    return read_ledger(storage, provider=NAME, resolution=R1K).sort_by("recorded_at").to_pylist()


def assert_books_match(storage: Storage, server: FakeCoServer) -> None:
    """Every amount the provider billed is in the ledger exactly once, per task and in total."""
    booked: dict[str, Decimal] = {}
    for r in ledger_rows(storage):
        if r["task_id"]:
            booked[r["task_id"]] = booked.get(r["task_id"], Decimal(0)) + r["final_cost"]
    assert {t: a for t, a in booked.items() if a} == server.billed


def assert_audit_passes(result, storage: Storage) -> None:
    checks = audit(result, storage)
    assert all(o.passed for o in checks.values()), {k: o.description for k, o in checks.items()}


async def test_a_third_provider_runs_through_the_unchanged_engine(tmp_path):
    storage, server = Storage(tmp_path / "store"), FakeCoServer()
    rows = [*prompt_rows(5), prompt_row("long", "x" * 600, row_number=9)]  # over FakeCo's own limit
    result = await run(storage, server, rows, "run-1")
    rep = result.report
    assert (rep.provider, rep.succeeded, rep.failed, rep.submitted) == (NAME, 5, 1, 5)
    assert rep.failures_by_reason == {"invalid_request": 1} and rep.cost_unit == "usd"
    assert rep.final_cost == 5 * PRICE and rep.polls == server.status_calls - 5  # the audit asked 5 more
    rows_by_id = {r["prompt_id"]: r for r in ledger_rows(storage)}
    assert "at most 500" in rows_by_id["long"]["error_message"]
    ok = rows_by_id["p000"]
    assert (ok["provider"], ok["model_requested"], ok["cost_unit"]) == (NAME, "fakeco/banana-1", "usd")
    assert ok["image_uri"].startswith(storage.path("images", f"provider={NAME}", "resolution=1K"))
    assert ok["idempotency_key"] == idempotency_key(ledger_id(storage), ok["fingerprint"], 0)
    assert sum(len(v) for v in read_journal(storage, NAME, R1K).tasks.values()) == 5
    assert_books_match(storage, server)
    assert_audit_passes(result, storage)
    again = await run(storage, server, rows, "run-2")
    assert (again.report.already_done, again.report.submitted, again.report.final_cost) == (5, 0, 0)


async def test_a_provider_that_names_no_model_is_marked_with_the_one_asked_for(tmp_path):
    """FakeCo's answers say nothing of the model: the ledger keeps model_served null, and the image names
    the requested id as its AI system version with nbpro:modelStated False."""
    storage, server = Storage(tmp_path / "store"), FakeCoServer()
    await run(storage, server, prompt_rows(1), "run-1")
    (row,) = ledger_rows(storage)
    assert row["model_requested"] == "fakeco/banana-1" and row["model_served"] is None
    xmp = read_xmp(Path(row["image_uri"]).read_bytes())
    assert xmp[IPTC_AI_FIELDS["ai_system_version"]] == xmp["Xmp.nbpro.model"] == "fakeco/banana-1"
    assert xmp["Xmp.nbpro.modelStated"] == "False" and "Xmp.nbpro.modelVersion" not in xmp


async def test_a_crash_after_submitting_resumes_the_journaled_tasks(tmp_path, monkeypatch):
    storage, server = Storage(tmp_path / "store"), FakeCoServer()
    rows = prompt_rows(4)
    barrier = asyncio.Barrier(len(rows))

    async def crash(self, attempt):
        await barrier.wait()  # every task is created and journaled; none is stored or booked
        raise SimulatedCrash

    monkeypatch.setattr(PromptSteps, "fetch_and_place", crash)
    with pytest.raises(SimulatedCrash):
        await run(storage, server, rows, "run-crashed")
    monkeypatch.undo()
    assert ledger_rows(storage) == [] and len(server.tasks) == 4
    result = await run(storage, server, rows, "run-2")
    rep = result.report
    assert (rep.resumed, rep.submitted, rep.succeeded, rep.final_cost) == (4, 0, 4, 4 * PRICE)
    assert len(server.tasks) == 4  # polled again, never bought again
    assert_books_match(storage, server)
    assert_audit_passes(result, storage)


@pytest.mark.parametrize("where", ["wait", "fetch"])
async def test_an_unreadable_paid_result_is_booked_at_its_price_kept_and_resumed(tmp_path, where):
    storage, server = Storage(tmp_path / "store"), FakeCoServer(unreadable=where)
    rows = prompt_rows(3)
    first = await run(storage, server, rows, "run-1")
    rep = first.report
    assert rep.failures_by_reason == {"result_unreadable": 3} and rep.final_cost == 3 * PRICE
    assert rep.polls == 3 * server.polls_to_finish  # the real status calls, from the error when it has them
    for r in ledger_rows(storage):
        assert (r["status"], r["error_code"], r["final_cost"]) == ("failed", "result_unreadable", PRICE)
    kept = storage.find(storage.path("quarantine", f"provider={NAME}", "resolution=1K"))
    assert len(kept) == 3 and all(storage.read_bytes(p) == RAW_BODY for p in kept)
    assert all(p.endswith(".body.json") for p in kept)
    assert_books_match(storage, server)
    assert_audit_passes(first, storage)

    second = await run(storage, server, rows, "run-2")  # still unreadable: polled again, no second cost
    assert (second.report.resumed, second.report.submitted, second.report.final_cost) == (3, 0, 0)
    server.unreadable = None  # the client learnt the new shape
    third = await run(storage, server, rows, "run-3")
    assert (third.report.resumed, third.report.succeeded, third.report.final_cost) == (3, 3, 0)
    assert len(server.tasks) == 3  # never resubmitted
    assert_books_match(storage, server)
    assert_audit_passes(third, storage)


async def test_a_replayed_create_is_not_booked_twice(tmp_path):
    """A submit the provider answers with a task this ledger already holds (its stored image is gone,
    so the fingerprint is asked for again under the same key): booked net of what is already there."""
    storage, server = Storage(tmp_path / "store"), FakeCoServer()
    rows = prompt_rows(2)
    await run(storage, server, rows, "run-1")
    lost = next(r for r in ledger_rows(storage) if r["prompt_id"] == "p000")
    storage.fs.rm(lost["image_uri"])
    again = await run(storage, server, rows, "run-2")
    rep = again.report
    assert (rep.submitted, rep.replayed, rep.succeeded, rep.already_done, rep.final_cost) == (1, 1, 1, 1, 0)
    assert len(server.tasks) == 2
    assert_books_match(storage, server)


async def test_two_storage_roots_never_share_a_task(tmp_path):
    """Same prompts, one account, two roots: each root's keys are its own, so neither books the other's."""
    server, rows = FakeCoServer(), prompt_rows(3)
    a, b = Storage(tmp_path / "a"), Storage(tmp_path / "b")
    await run(a, server, rows, "run-a")
    await run(b, server, rows, "run-b")
    tasks_a = {r["task_id"] for r in ledger_rows(a)}
    tasks_b = {r["task_id"] for r in ledger_rows(b)}
    assert len(tasks_a) == len(tasks_b) == 3 and not tasks_a & tasks_b
    assert ledger_id(a) != ledger_id(b)
    total = sum((r["final_cost"] for s in (a, b) for r in ledger_rows(s)), Decimal(0))
    assert total == sum(server.billed.values()) == 6 * PRICE
