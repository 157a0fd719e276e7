"""Rivya idempotency keys carry the storage root's ledger id: two roots on one account never both book
one task, while a crash-resume on one root still replays its own task (over real HTTP, the sandbox)."""

from __future__ import annotations

from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, ledger_id
from tests.engine.conftest import price, prompt_rows

RIVYA = Provider.RIVYA


async def test_two_storage_roots_on_one_account_each_book_their_own_tasks(harness, tmp_path):
    rows = prompt_rows(3)
    first_root = harness.storage
    await harness.run(RIVYA, rows, run_id="run-a")
    tasks_a = {r["task_id"] for r in harness.rows(RIVYA)}
    keys_a = {r["idempotency_key"] for r in harness.rows(RIVYA)}
    harness.storage = Storage(tmp_path / "another-root")
    report = await harness.run(RIVYA, rows, run_id="run-b")
    assert (report.submitted, report.succeeded, report.final_cost) == (3, 3, 3 * price(RIVYA))
    tasks_b = {r["task_id"] for r in harness.rows(RIVYA)}
    keys_b = {r["idempotency_key"] for r in harness.rows(RIVYA)}
    assert not tasks_a & tasks_b and not keys_a & keys_b  # same prompts, same account: new tasks
    assert harness.tasks_created(RIVYA) == 6
    assert ledger_id(first_root) != ledger_id(harness.storage)
    # what both ledgers hold together is what the account was billed, each credit once
    booked = harness.ledger_total(RIVYA)
    harness.storage = first_root
    assert booked + harness.ledger_total(RIVYA) == harness.sandbox_total(RIVYA)


async def test_a_rerun_on_the_same_root_keeps_its_keys(harness):
    rows = prompt_rows(2)
    await harness.run(RIVYA, rows, run_id="run-1")
    lost = harness.rows(RIVYA)[0]
    harness.storage.fs.rm(lost["image_uri"])  # the image is gone: the fingerprint is asked for again
    again = await harness.run(RIVYA, rows, run_id="run-2")
    # same ledger id, same key: Rivya replays the task it already made, and the ledger books it once
    assert (again.submitted, again.succeeded, again.final_cost) == (1, 1, 0)
    assert harness.tasks_created(RIVYA) == 2
    rows_for = [r for r in harness.rows(RIVYA) if r["prompt_id"] == lost["prompt_id"]]
    assert {r["task_id"] for r in rows_for} == {lost["task_id"]}
    assert {r["idempotency_key"] for r in rows_for} == {lost["idempotency_key"]}
    harness.assert_reconciles(RIVYA)
