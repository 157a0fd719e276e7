"""The money promise as a property: whatever plausible answers the provider gives (the sandbox's mutation
mode varies spellings, shapes, numbers, missing fields, inline images, returned URLs, read lag and
minimal creates, under a seed) and whatever faults it injects, once the cell has settled:

- the ledger equals the provider's billing, per provider and per task id;
- every billed task id is in the ledger (with its id), and none is booked at 0;
- every paid image is stored (or, failing its checks, kept in quarantine) with the provider's bytes.

Seeds per provider: ``NBPRO_MUTATION_EXAMPLES`` (default 25; the closing figures use 200+).
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbpro_pipeline.engine.outcomes import RESUMABLE_CODES
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer
from nbpro_pipeline.storage import Storage
from tests.engine.conftest import Harness, prompt_rows, sandbox_amounts

EXAMPLES = int(os.environ.get("NBPRO_MUTATION_EXAMPLES", "25"))
MAX_RUNS = 4

FAULTS = st.fixed_dictionaries(
    {
        # every rate given: the sandbox deep-merges a partial config into the last example's
        "task_failed": st.sampled_from([(0.0, 0.0), (0.2, 0.0), (0.0, 0.1)]).map(
            lambda r: {"INFERENCE_FAILURE": r[0], "CONTENT_BLOCKED": r[1]}
        ),
        "wrong_size": st.sampled_from([0.0, 0.15]),
        "corrupt_image": st.sampled_from([0.0, 0.1]),
        "expired_url": st.sampled_from([0.0, 0.2]),
        "http_5xx": st.sampled_from([0.0, 0.05]),
    }
)


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory):
    with SandboxServer(tmp_path_factory.mktemp("sandbox"), SandboxConfig.zero_latency()) as server:
        yield server


def settle(harness: Harness, provider: Provider, rows) -> int:
    """Run the cell until no row is left to resume (the next run would pay nothing and change nothing)."""
    for run in range(1, MAX_RUNS + 1):
        asyncio.run(harness.run(provider, rows, run_id=f"run-{run}"))
        latest = {}
        for row in sorted(harness.rows(provider), key=lambda r: r["recorded_at"]):
            latest[row["fingerprint"]] = row
        if not any(r["error_code"] in RESUMABLE_CODES and r["task_id"] for r in latest.values()):
            return run
    return MAX_RUNS


def check_invariants(harness: Harness, provider: Provider) -> None:
    billed = sandbox_amounts(harness.sandbox, provider)
    booked = harness.ledger_by_task(provider)
    assert harness.ledger_total(provider) == sum(billed.values(), Decimal(0)), "ledger total != billing"
    for task_id, amount in billed.items():
        if amount:
            assert task_id in booked, f"billed task {task_id} ({amount}) missing from the ledger"
            assert booked[task_id] == amount, f"task {task_id}: booked {booked[task_id]}, billed {amount}"
    assert {t for t, a in booked.items() if a} <= set(billed), "a booked task the provider never billed"
    kept = {r["provider_sha256"] for r in harness.rows(provider) if r["image_uri"]}
    for task in harness.sandbox.tasks(provider.value):
        if task["phase"] == "succeeded" and Decimal(str(task["billed"])) > 0:
            assert task["image_sha256"] in kept, f"paid image of {task['id']} not kept ({task['mutations']})"
            path = next(r["image_uri"] for r in harness.rows(provider) if r["provider_sha256"] == task["image_sha256"])
            assert Path(path.removeprefix("file://")).exists()


@pytest.mark.slow
@pytest.mark.parametrize("provider", list(Provider), ids=lambda p: p.value)
@pytest.mark.timeout(60 + 5 * EXAMPLES)  # one test call runs every example
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**31 - 1), faults=FAULTS)
def test_money_invariants_hold_whatever_the_provider_answers(
    provider, seed, faults, shared_sandbox, tmp_path_factory, rivya_key, odirouter_key
):
    shared_sandbox.reset()
    shared_sandbox.set_config({"seed": seed, "wire": {"mutations": {"seed": seed}}, provider.value: {"faults": faults}})
    harness = Harness(
        sandbox=shared_sandbox,
        storage=Storage(tmp_path_factory.mktemp("store")),
        keys={Provider.RIVYA: rivya_key, Provider.ODIROUTER: odirouter_key},
    )
    settle(harness, provider, prompt_rows(6, prefix=f"s{seed}-"))
    assert any(t["mutations"] for t in shared_sandbox.tasks(provider.value)), "no answer was varied"
    check_invariants(harness, provider)
