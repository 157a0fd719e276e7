"""The checks a cell run must pass, on real runs against the sandbox, and that each one notices
the defect it exists for."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from nbpro_pipeline.cell.checks import check_accounting, check_reconciles, check_stored_images
from nbpro_pipeline.engine.reconcile import ask_provider
from nbpro_pipeline.engine.report import CellReport
from nbpro_pipeline.models.check import CheckOutcome
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage
from tests.cell.audit import audit as checks_of
from tests.engine.conftest import R1K, SETTINGS, Harness, fingerprint, price, prompt_rows


@dataclass
class Audited:
    report: CellReport
    checks: dict[str, CheckOutcome]


async def audit(harness: Harness, provider: Provider, rows, run_id: str = "run-1", settings=SETTINGS) -> Audited:
    """Run the cell through the engine's entry point, then check only what it produced."""
    await harness.run(provider, rows, run_id=run_id, settings=settings)
    result = harness.results[-1]
    return Audited(result.report, checks_of(result, harness.storage))


def eligible(rows, provider):
    return {fingerprint(r, provider): r.prompt_id for r in rows}


def drop_prompt(table: pa.Table, prompt_id: str) -> pa.Table:
    return table.filter(pc.not_equal(table["prompt_id"], prompt_id))


async def test_every_check_passes_on_a_clean_run(harness, provider):
    rows = prompt_rows(8)
    audited = await audit(harness, provider, rows)
    assert audited.report.succeeded == 8
    assert set(audited.checks) == {"all_rows_accounted", "images_valid", "ledger_reconciles"}
    for name, outcome in audited.checks.items():
        assert outcome.passed, (name, outcome.description)
    assert audited.checks["all_rows_accounted"].metadata["eligible"] == 8
    cell = f"{provider.value}|1K"
    assert audited.checks["images_valid"].metadata == {"cell": cell, "checked": 8, "bad": 0, "bad_marks": 0}
    assert all(o.description.startswith(f"{cell}: ") for o in audited.checks.values())
    assert audited.checks["ledger_reconciles"].metadata == {
        "cell": cell,
        "tasks_checked": 8,
        "mismatched": 0,
        "unreachable": 0,
        "unverifiable": 0,
    }
    harness.assert_reconciles(provider)


async def test_checks_pass_when_rows_failed_with_a_reason(harness, provider):
    harness.configure(provider, faults={"task_failed": {"CONTENT_BLOCKED": 1.0}})
    audited = await audit(harness, provider, prompt_rows(4))
    assert audited.report.failed == 4
    assert all(o.passed for o in audited.checks.values()), audited.checks
    assert audited.checks["all_rows_accounted"].metadata["failed"] == 4


async def test_a_rerun_audits_clean_too(harness, provider):
    rows = prompt_rows(4)
    await audit(harness, provider, rows, "run-1")
    again = await audit(harness, provider, rows, "run-2")
    assert again.report.already_done == 4
    assert all(o.passed for o in again.checks.values()), again.checks
    assert again.checks["images_valid"].metadata["checked"] == 0


async def test_accounting_fails_when_a_ledger_row_is_missing(harness, provider):
    rows = prompt_rows(5)
    await audit(harness, provider, rows)
    ledger = harness.ledger(provider, R1K)
    assert check_accounting(eligible(rows, provider), ledger).passed
    outcome = check_accounting(eligible(rows, provider), drop_prompt(ledger, "p003"))
    assert not outcome.passed and outcome.metadata["missing"] == 1 and "p003" in outcome.description


async def test_accounting_fails_on_a_failure_without_a_reason(harness, provider):
    rows = prompt_rows(3)
    await audit(harness, provider, rows)
    ledger = harness.ledger(provider, R1K)
    status = pc.if_else(pc.equal(ledger["prompt_id"], "p001"), "failed", ledger["status"])
    tampered = ledger.set_column(ledger.schema.get_field_index("status"), "status", status)
    outcome = check_accounting(eligible(rows, provider), tampered)
    assert not outcome.passed and outcome.metadata["reasonless"] == 1


async def test_image_check_fails_on_a_replaced_or_missing_image(harness, provider):
    await audit(harness, provider, prompt_rows(3))
    ledger = harness.ledger(provider, R1K)
    assert check_stored_images(ledger).passed
    uris = sorted(ledger["image_uri"].to_pylist())
    Image.new("RGB", (640, 480)).save(uris[0], "PNG")  # decodes, wrong size
    os.unlink(uris[1])
    outcome = check_stored_images(ledger)
    assert not outcome.passed and outcome.metadata == {"checked": 3, "bad": 2, "bad_marks": 0}
    assert "`p000`: size_mismatch" in outcome.description and "`p001`: " in outcome.description
    assert check_stored_images(ledger, limit=1).metadata["checked"] == 1


async def test_reconciliation_fails_when_the_ledger_disagrees_with_the_provider(harness, provider):
    await audit(harness, provider, prompt_rows(4))
    ledger = harness.ledger(provider, R1K)
    charges = harness.results[-1].provider_charges
    ok = check_reconciles(charges, ledger)
    assert ok.passed and ok.metadata["tasks_checked"] == 4
    costs = pc.if_else(
        pc.equal(ledger["prompt_id"], "p000"),
        pa.scalar(Decimal(0), ledger["final_cost"].type),
        ledger["final_cost"],
    )
    tampered = ledger.set_column(ledger.schema.get_field_index("final_cost"), "final_cost", costs)
    bad = check_reconciles(charges, tampered)
    assert not bad.passed and bad.metadata["mismatched"] == 1
    # a task the provider does not know is reported as unreachable, not as a mismatch
    async with harness.client(provider) as client:
        unknown = await ask_provider(client, client.traits.billing, price(provider), ["nope"])
    assert unknown.unreachable == ["nope"] and check_reconciles(unknown, ledger).metadata["unreachable"] == 1


async def test_odirouter_tasks_cancelled_at_their_deadline_reconcile(harness):
    provider = Provider.ODIROUTER
    harness.configure(provider, latency={"processing": {"dist": "fixed", "value": 1.0}})
    settings = SETTINGS.model_copy(update={"task_deadline_s": 0.3})
    audited = await audit(harness, provider, prompt_rows(2), settings=settings)
    assert audited.report.failures_by_reason == {"deadline_cancelled": 2}
    harness.assert_reconciles(provider)  # the ledger does match what was billed...
    check = audited.checks["ledger_reconciles"]
    assert check.passed, check.description  # ...so the check must say so


async def test_image_check_reads_images_on_an_object_store_root(harness):
    harness.storage = Storage(f"memory://audit-{uuid.uuid4().hex}")
    try:
        audited = await audit(harness, Provider.RIVYA, prompt_rows(2))
        assert audited.report.succeeded == 2
        assert audited.checks["images_valid"].passed, audited.checks["images_valid"].description
    finally:
        harness.storage.fs.rm(harness.storage.root, recursive=True)
