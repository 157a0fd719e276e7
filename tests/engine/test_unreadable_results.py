"""A task the provider reports finished and billable whose result the client cannot read, over real
HTTP (the sandbox's ``wire`` knobs): booked at its price, its raw body kept under ``quarantine/``,
polled again by the next run (never resubmitted, never booked twice), stored once it can be read."""

from __future__ import annotations

from nbpro_pipeline.storage import Storage
from tests.engine.conftest import price, prompt_rows

UNKNOWN = {"rivya": {"rivya_result_shape": "unknown"}, "odirouter": {"odirouter_response_shape": "unknown"}}
KNOWN = {"rivya": {"rivya_result_shape": "documented"}, "odirouter": {"odirouter_response_shape": "outputs"}}


def quarantined_bodies(storage: Storage, provider) -> list[str]:
    root = storage.path("quarantine", f"provider={provider.value}", "resolution=1K")
    return [p for p in storage.find(root) if ".body." in p] if storage.exists(root) else []


async def test_an_unreadable_paid_result_is_booked_kept_and_resumed(harness, provider):
    harness.sandbox.set_config({"wire": UNKNOWN[provider.value]})
    rows = prompt_rows(3)
    first = await harness.run(provider, rows, run_id="run-1")
    assert first.failures_by_reason == {"result_unreadable": 3}
    assert first.final_cost == 3 * price(provider) and first.polls >= 3  # real status calls, not 0
    for r in harness.rows(provider):
        assert (r["status"], r["error_code"], r["final_cost"]) == ("failed", "result_unreadable", price(provider))
    bodies = quarantined_bodies(harness.storage, provider)
    assert len(bodies) == 3 and all(harness.storage.read_bytes(p) for p in bodies)
    harness.assert_reconciles(provider)

    second = await harness.run(provider, rows, run_id="run-2")  # still unreadable
    assert (second.resumed, second.submitted, second.final_cost) == (3, 0, 0)
    harness.sandbox.set_config({"wire": KNOWN[provider.value]})
    third = await harness.run(provider, rows, run_id="run-3")
    assert (third.resumed, third.submitted, third.succeeded, third.final_cost) == (3, 0, 3, 0)
    assert harness.tasks_created(provider) == 3  # never bought again
    harness.assert_reconciles(provider)
