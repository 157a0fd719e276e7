"""The fault matrix: every fault the sandbox can inject, at once, on a 200-prompt cell per provider x resolution.

What must hold however the faults interleave (the promise to a team that pays per image):
- every eligible prompt has exactly one ledger row per run, succeeded or failed with a reason;
- the ledger's costs equal the sandbox's billing ledger, per task and in total; on OdiRouter, which has
  no idempotency key, a submit cut off after the server created the task (``drop_after_processing``) is
  an *orphan*: billed by the provider, unknown to the pipeline. Orphans are measured from the sandbox's
  side and must each match exactly one ``submit_outcome_unknown`` row; ledger + orphans == billing;
- no fingerprint is charged twice on Rivya (its Idempotency-Key makes retries replays);
- the image folder holds exactly the succeeded rows' files, each complete and decodable; paid-for bad
  images sit in quarantine with their cost; no temp or scratch file is left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.models.common import AspectRatio, Resolution
from nbpro_pipeline.models.prompt import PromptRow
from nbpro_pipeline.providers import OdiRouterClient, PollPolicy, RetryPolicy
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.sandbox.faults import TASK_FAILURE_TYPES
from tests.engine.conftest import Harness, prompt_row, sandbox_amounts

pytestmark = pytest.mark.slow  # 200-prompt cells

PROMPTS = 200
TASK_DEADLINE_S = 0.4  # stuck tasks end here (Rivya: deadline_exceeded, OdiRouter: cancelled)
FAILURE_RATE_EACH = 0.03

# Every fault at once. The 429 burst carries a fractional Retry-After so the cell pauses for 20 ms, not 1 s.
MATRIX = {
    # small latencies, so polls also meet queued and processing tasks (and their faults)
    "latency": {
        "queued": {"dist": "uniform", "low": 0, "high": 0.03},
        "processing": {"dist": "uniform", "low": 0, "high": 0.06},
    },
    "rate_limit": {"retry_after_s": 0.02},
    "faults": {
        "rate_limited": 0.01,
        "http_5xx": 0.04,
        "drop_connection": 0.03,
        "drop_after_processing": 0.03,
        "drop_download": 0.08,
        "task_failed": dict.fromkeys(TASK_FAILURE_TYPES, FAILURE_RATE_EACH),
        "corrupt_image": 0.03,
        "wrong_size": 0.03,
        "expired_url": 0.1,
        "stuck_task": 0.03,
    },
}
# More attempts than the default test policy: with ~10 % of requests faulted and 429 bursts shared by
# the whole client, 12 attempts make "retries ran out" (a poll_failed row) vanishingly rare.
RETRY = RetryPolicy(max_attempts=12, base_delay_s=0.005, max_delay_s=0.04)
POLL = PollPolicy(first_delay_s=0.01, factor=1.5, max_interval_s=0.05, deadline_s=TASK_DEADLINE_S)
SETTINGS = EngineSettings(
    max_in_flight=16, progress_interval_s=60, ledger_flush_interval_s=60, task_deadline_s=TASK_DEADLINE_S
)
QUARANTINE_CODES = {"corrupt_image", "size_mismatch", "format_mismatch"}
CELLS = [(p, r) for p in Provider for r in (Resolution.R1K, Resolution.R4K)]
_RATIOS = [a for a in AspectRatio if a is not AspectRatio.AUTO]


def matrix_rows(n: int = PROMPTS) -> list[PromptRow]:
    return [
        prompt_row(f"m{i:03d}", f"fault matrix prompt {i}", row_number=i + 1, aspect_ratio=_RATIOS[i % len(_RATIOS)])
        for i in range(n)
    ]


def price(provider: Provider, resolution: Resolution) -> Decimal:
    if provider is Provider.RIVYA:
        return Decimal(8)
    return Decimal("0.30") if resolution is Resolution.R4K else Decimal("0.15")


async def run_matrix(
    harness: Harness, provider: Provider, resolution: Resolution, rows, run_id: str, deadline_s: float = TASK_DEADLINE_S
):
    """``deadline_s``: the task deadline (engine and client); a test about failing polls sets it far beyond
    the retries, so that they, not the clock, end the task however loaded the machine is."""
    poll = POLL.model_copy(update={"deadline_s": deadline_s})
    settings = SETTINGS.model_copy(update={"task_deadline_s": deadline_s})
    async with harness.client(provider, retry=RETRY, poll=poll, seed=7) as client:
        runner = harness.runner(provider, client, run_id=run_id, resolution=resolution, settings=settings)
        report = await runner.run(rows)
    # Orphan tasks (nobody polls them) are billed by the sandbox's settlement tick once their latency is
    # over; give it that long so the billing read next is final. A wait for the emulator, not an assertion.
    await asyncio.sleep(0.25)
    return report


def sandbox_tasks(harness: Harness, provider: Provider) -> dict[str, dict]:
    """Every task the sandbox created for ``provider``, read from its own state (id -> task record)."""
    db = sqlite3.connect(f"file:{harness.sandbox.state_dir / 'sandbox.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, data FROM tasks WHERE provider = ?", (provider.value,)).fetchall()
    finally:
        db.close()
    return {task_id: json.loads(data) for task_id, data in rows}


def orphans(harness: Harness, provider: Provider) -> dict[str, Decimal]:
    """Tasks the sandbox billed that no ledger row names: what a lost submit answer cost."""
    known = {r["task_id"] for r in harness.rows(provider) if r["task_id"]}
    return {t: a for t, a in sandbox_amounts(harness.sandbox, provider).items() if t not in known and a}


def assert_files_match_ledger(harness: Harness, provider: Provider, resolution: Resolution, rows: list[dict]) -> None:
    root = Path(harness.storage.root)
    cell = f"provider={provider.value}/resolution={resolution.value}"
    images = {str(p) for p in (root / "images" / cell).glob("*") if p.is_file()}
    quarantined = {str(p) for p in (root / "quarantine" / cell).glob("*") if p.is_file()}
    succeeded = [r for r in rows if r["status"] == "succeeded"]
    assert images == {r["image_uri"] for r in succeeded}  # every success has its file, no file without one
    bad = [r for r in rows if r["error_code"] in QUARANTINE_CODES]
    assert quarantined == {r["image_uri"] for r in bad}  # paid-for bad images kept, apart from good ones
    for r in bad:  # a quarantined image keeps its cost (on this row, or an earlier row of its task)
        assert harness.ledger_by_task(provider)[r["task_id"]] == price(provider, resolution)
    for i, r in enumerate(succeeded):
        data = Path(r["image_uri"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["image_sha256"] and len(data) == r["bytes"]
        with Image.open(r["image_uri"]) as im:
            assert im.size == (r["width"], r["height"])
            im.verify()  # every chunk present and intact: a partial file fails here
        if resolution is Resolution.R1K or i % 8 == 0:  # full decodes of 4K images are slow: a sample
            with Image.open(r["image_uri"]) as im:
                im.load()
    leftovers = [p for p in root.rglob("*") if p.name.startswith(".tmp-") or p.suffix == ".part"]
    assert leftovers == []
    assert harness.scratch_is_empty()


def assert_cell_accounted(
    harness: Harness, provider: Provider, resolution: Resolution, rows: list[PromptRow], run_id: str
) -> list[dict]:
    """Every eligible prompt has exactly one row in ``run_id``: succeeded, or failed with a reason."""
    run_rows = [r for r in harness.rows(provider, run_id=run_id) if r["resolution"] == resolution.value]
    per_prompt = Counter(r["prompt_id"] for r in run_rows)
    expected = {r.prompt_id for r in rows if r.eligible_for(provider, resolution)}
    assert set(per_prompt) == expected  # 0 missing, none extra
    assert {n for n in per_prompt.values()} == {1}  # 0 duplicated
    for r in run_rows:
        assert r["status"] in ("succeeded", "failed"), r
        if r["status"] == "failed":
            assert r["error_code"] and r["error_message"], r
    return run_rows


def open_tasks(harness: Harness, provider: Provider) -> set[str]:
    """Tasks whose latest row is poll_failed or deadline_exceeded: their outcome was not known when the
    row was written, so its cost is provisional (Rivya: the reservation; OdiRouter: what earlier rows
    hold) and the next run polls the task again and settles the difference. At the matrix's rates a
    poll_failed needs 12 failed attempts in a row; deadline_exceeded is a Rivya stuck task (still
    reserved, so exact while it stays stuck)."""
    latest: dict[str, str] = {}
    for r in sorted(harness.rows(provider), key=lambda r: r["recorded_at"]):
        if r["task_id"]:
            latest[r["task_id"]] = r["error_code"]
    return {t for t, code in latest.items() if code in ("poll_failed", "deadline_exceeded")}


def assert_money(harness: Harness, provider: Provider) -> dict[str, Decimal]:
    """Ledger == sandbox billing per task; OdiRouter orphans measured, each one an unknown-outcome row."""
    billed = {t: a for t, a in sandbox_amounts(harness.sandbox, provider).items() if a}
    recorded = {t: a for t, a in harness.ledger_by_task(provider).items() if a}
    lost = orphans(harness, provider)
    pending = open_tasks(harness, provider)
    assert {t: a for t, a in recorded.items() if t not in pending} == {
        t: a for t, a in billed.items() if t not in lost and t not in pending
    }
    gaps = {t: billed.get(t, Decimal(0)) - recorded.get(t, Decimal(0)) for t in pending}
    assert all(abs(gap) <= max(billed.get(t, 0), recorded.get(t, 0)) for t, gap in gaps.items())
    deferred = sum(gaps.values(), Decimal(0))
    assert harness.ledger_total(provider) + sum(lost.values(), Decimal(0)) + deferred == harness.sandbox_total(provider)
    ledger = harness.rows(provider)
    if provider is Provider.RIVYA:
        # The Idempotency-Key turns every cut-off create into a replay. The only task the ledger may not
        # name yet is one whose create went through while every retry of it failed (provider_error, no
        # task id): the next run resubmits the journaled key and the provider replays that very task.
        tasks = sandbox_tasks(harness, provider)
        replayable = {r["idempotency_key"] for r in ledger if r["error_code"] == "provider_error" and not r["task_id"]}
        assert all(tasks[t]["idempotency_key"] in replayable for t in lost), lost
        # No fingerprint charged twice: one charge per (fingerprint, Idempotency-Key), and a second
        # charged attempt of a fingerprint only after the first delivered a paid-for but unusable image
        # (quarantined): that is a deliberate new purchase under a new key, never a replayed one.
        by_task = {r["task_id"]: r for r in sorted(ledger, key=lambda r: r["recorded_at"]) if r["task_id"]}
        unnamed = {t for t in tasks if t not in by_task}
        assert all(tasks[t]["idempotency_key"] in replayable for t in unnamed)  # no task the ledger cannot find
        assert len({tasks[t]["idempotency_key"] for t in tasks}) == len(tasks)  # one task per key, ever
        per_key = Counter((by_task[t]["fingerprint"], by_task[t]["idempotency_key"]) for t in billed if t in by_task)
        assert [k for k, n in per_key.items() if n > 1] == []
        per_fp: dict[str, list[dict]] = {}
        for t in billed.keys() - lost.keys():
            per_fp.setdefault(by_task[t]["fingerprint"], []).append(by_task[t])
        for attempts in per_fp.values():
            attempts.sort(key=lambda r: r["recorded_at"])
            assert all(r["error_code"] in QUARANTINE_CODES for r in attempts[:-1]), attempts
    else:
        # each orphan is a task whose submit answer was lost: its prompt has a submit_outcome_unknown row
        tasks = sandbox_tasks(harness, provider)
        unknown = Counter(r["prompt_sha256"] for r in ledger if r["error_code"] == "submit_outcome_unknown")
        for task_id in lost:
            sha = hashlib.sha256(tasks[task_id]["prompt"].encode()).hexdigest()
            assert unknown[sha] >= 1, f"orphan {task_id} has no submit_outcome_unknown row"
            unknown[sha] -= 1  # one row per orphan: never two orphans behind one unknown outcome
    return lost


@pytest.mark.parametrize(("provider", "resolution"), CELLS, ids=lambda v: v.value)
async def test_every_fault_at_once_loses_nothing_and_bills_exactly(harness, provider, resolution):
    harness.configure(provider, **MATRIX)
    rows = matrix_rows()
    report = await run_matrix(harness, provider, resolution, rows, "run-1")

    run_rows = assert_cell_accounted(harness, provider, resolution, rows, "run-1")
    lost = assert_money(harness, provider)
    assert_files_match_ledger(harness, provider, resolution, run_rows)
    assert report.succeeded + report.failed == PROMPTS and report.skipped == 0

    # the faults really struck: a matrix that injected nothing would prove nothing
    stats = harness.sandbox.stats()[provider.value]
    assert stats["rate_limited_429"] > 0 and stats["dropped_connections"] > 0 and stats["dropped_downloads"] > 0
    assert report.client_counters.get("expired_urls", 0) > 0
    reasons = set(report.failures_by_reason)
    assert {"corrupt_image", "size_mismatch"} <= reasons
    if provider is Provider.RIVYA:
        assert {"generation_failed", "deadline_exceeded"} <= reasons
    else:
        assert set(TASK_FAILURE_TYPES) | {"deadline_cancelled", "submit_outcome_unknown"} <= reasons
    assert set(stats["failures_by_type"]) == set(TASK_FAILURE_TYPES)
    created = sandbox_tasks(harness, provider)
    unnamed = len(created.keys() - {r["task_id"] for r in harness.rows(provider)})
    print(
        f"\n{provider.value}|{resolution.value}: {len(created)} tasks, {unnamed} unknown to the ledger; "
        f"{report.succeeded} ok, {report.failed} failed "
        f"{dict(sorted(report.failures_by_reason.items()))}; ledger {harness.ledger_total(provider)} "
        f"+ orphans {sum(lost.values(), Decimal(0))} ({len(lost)}) == billed {harness.sandbox_total(provider)}; "
        f"429s {stats['rate_limited_429']}, dropped {stats['dropped_connections']}+{stats['dropped_downloads']}"
    )


@pytest.mark.parametrize("provider", list(Provider), ids=lambda p: p.value)
async def test_the_matrix_run_twice_still_reconciles(harness, provider):
    """The second run resumes the first (stuck and undownloaded tasks polled again, gaps filled): the
    ledger still equals the billing, and Rivya never charges a fingerprint twice."""
    resolution = Resolution.R1K
    harness.configure(provider, **MATRIX)
    rows = matrix_rows()
    first = await run_matrix(harness, provider, resolution, rows, "run-1")
    second = await run_matrix(harness, provider, resolution, rows, "run-2")

    assert_cell_accounted(harness, provider, resolution, rows, "run-1")
    # run 2 writes one row for each prompt run 1 left unfinished, and none for the ones it finished
    run2 = Counter(r["prompt_id"] for r in harness.rows(provider, run_id="run-2"))
    done = {r["prompt_id"] for r in harness.rows(provider, run_id="run-1") if r["status"] == "succeeded"}
    assert second.already_done == first.succeeded == len(done)
    assert set(run2) == {r.prompt_id for r in rows} - done and set(run2.values()) == {1}
    if provider is Provider.RIVYA:  # stuck tasks are polled again, never rebought (Rivya has no cancel)
        assert second.resumed >= first.failures_by_reason["deadline_exceeded"] > 0

    lost = assert_money(harness, provider)
    all_rows = harness.rows(provider)
    assert_files_match_ledger(harness, provider, resolution, all_rows)
    succeeded_per_fp = Counter(r["fingerprint"] for r in all_rows if r["status"] == "succeeded")
    assert max(succeeded_per_fp.values()) == 1  # never two paid images for one request
    if provider is Provider.ODIROUTER:
        assert lost  # the measured bound is not vacuous at these rates


class SlowCancelClient(OdiRouterClient):
    """Its cancel reaches the provider late (a slow network), so the task can leave the queue between
    the last poll and the cancel: exactly the race in which the last polled state misjudges the bill."""

    cancel_delay_s = 0.0

    async def cancel(self, task_id: str):
        await asyncio.sleep(self.cancel_delay_s)
        return await super().cancel(task_id)


@pytest.mark.parametrize(("cancel_delay_s", "billed"), [(1.3, True), (0.0, False)], ids=["started", "queued"])
async def test_a_cancel_at_the_deadline_is_recorded_as_the_provider_bills_it(harness, cancel_delay_s, billed):
    """Every task is still IN_QUEUE at its last poll (queue 1 s, deadline 0.15 s); a cancel that lands
    after the task started processing is billed, one that lands while it waits is free. The ledger must
    follow the provider's answer after the cancel, not the stale poll before it."""
    provider = Provider.ODIROUTER
    harness.configure(
        provider, latency={"queued": {"dist": "fixed", "value": 1.0}, "processing": {"dist": "fixed", "value": 30}}
    )
    settings = SETTINGS.model_copy(update={"task_deadline_s": 0.15})
    async with SlowCancelClient(harness.sandbox.odirouter_url, harness.keys[provider], retry=RETRY, poll=POLL) as c:
        c.cancel_delay_s = cancel_delay_s
        report = await harness.runner(provider, c, settings=settings).run(matrix_rows(3))
    assert report.failures_by_reason == {"deadline_cancelled": 3}
    assert report.final_cost == (3 * price(provider, Resolution.R1K) if billed else 0)
    harness.assert_reconciles(provider)


async def test_a_resumed_paid_task_whose_polls_fail_keeps_its_cost(harness):
    """OdiRouter: run 1 pays for an image it cannot download (recorded, resumable); run 2 cannot even
    poll. Learning nothing new must not write a refund the provider never made."""
    provider = Provider.ODIROUTER
    harness.configure(provider, faults={"drop_download": 1.0})
    rows = matrix_rows(3)
    first = await run_matrix(harness, provider, Resolution.R1K, rows, "run-1")
    assert first.failures_by_reason == {"download_failed": 3} and first.final_cost == Decimal("0.45")
    harness.configure(provider, faults={"drop_download": 0.0, "http_5xx": 1.0})
    second = await run_matrix(harness, provider, Resolution.R1K, rows, "run-2", deadline_s=30)
    assert second.resumed == 3 and second.failures_by_reason == {"poll_failed": 3}
    assert second.final_cost == 0
    harness.assert_reconciles(provider)
