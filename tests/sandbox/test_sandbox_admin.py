"""``/_sandbox``: ledger, wallets, top-up, reset, runtime config, health and stats; and the invariant
that the ledger explains every wallet movement exactly."""

from __future__ import annotations

import io
import time
from decimal import Decimal

import pytest
from PIL import Image

from tests.sandbox.conftest import configure, slow


def test_health_and_index(http):
    health = http.get("/_sandbox/health").json()
    assert health["status"] == "ok" and health["tasks"] == 0
    index = http.get("/").json()
    assert index["odirouter_base_url"].endswith("/model")


def test_ledger_entries_shape_and_provider_filter(sandbox, rivya, odi, http):
    rivya.generate("ledger r")
    odi.generate(prompt="ledger o")
    entries = http.get("/_sandbox/ledger").json()["entries"]
    assert [(e["provider"], e["kind"], e["unit"]) for e in entries] == [
        ("rivya", "reserve", "credits"),
        ("rivya", "settle", "credits"),
        ("odirouter", "charge", "usd"),
    ]
    assert all(set(e) == {"provider", "task_id", "kind", "amount", "unit", "at"} for e in entries)
    assert [e["provider"] for e in http.get("/_sandbox/ledger?provider=odirouter").json()["entries"]] == ["odirouter"]
    task_id = entries[0]["task_id"]
    assert len(http.get(f"/_sandbox/ledger?task_id={task_id}").json()["entries"]) == 2
    assert http.get("/_sandbox/ledger?provider=fal").status_code == 400


def test_topup_moves_the_wallet_not_the_ledger(sandbox, rivya, http):
    response = http.post("/_sandbox/topup", json={"provider": "rivya", "amount": 25})
    assert response.json() == {"provider": "rivya", "balance": 100_025, "unit": "credits"}
    assert rivya.credits() == 100_025
    assert sandbox.topup("odirouter", 0.05) == pytest.approx(1000.05)
    assert sandbox.ledger() == []
    assert sandbox.wallets()["odirouter"]["topped_up"] == pytest.approx(0.05)
    for bad in ({"provider": "fal", "amount": 1}, {"provider": "rivya"}, {"provider": "rivya", "amount": 1.5}):
        assert http.post("/_sandbox/topup", json=bad).status_code == 400


def test_reset_wipes_everything_back_to_initial_wallets(sandbox, rivya, odi, http):
    task_id = rivya.generate("before reset")["id"]
    rivya.create("keyed", idempotency_key="reset-key")
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")
    file_id = rivya.http.post(
        "/api/v1/files", files={"file": ("a.png", png.getvalue())}, data={"kind": "image"}
    ).json()["id"]
    odi.generate(prompt="before reset")
    sandbox.topup("rivya", 5)
    sandbox.reset()
    assert sandbox.ledger() == []
    assert rivya.credits() == 100_000 and sandbox.wallets()["odirouter"]["balance"] == 1000
    assert rivya.get(task_id).status_code == 404
    assert sandbox.stats()["rivya"]["tasks_created"] == 0
    again = rivya.create("keyed", idempotency_key="reset-key").json()  # the key is forgotten too
    assert again["status"] == "queued"
    assert rivya.http.get(f"/api/v1/files/{file_id}").status_code == 404
    assert not any((sandbox.state_dir / "files").iterdir())


def test_config_get_and_put_deep_merge_and_take_effect(sandbox, rivya, http):
    config = http.get("/_sandbox/config").json()
    assert config["rivya"]["latency"]["queued"] == {
        "dist": "fixed", "value": 0.0, "low": None, "high": None, "median": None, "sigma": None
    }  # fmt: skip
    updated = http.put("/_sandbox/config", json={"rivya": {"faults": {"task_failed": {"CONTENT_BLOCKED": 1}}}})
    assert updated.status_code == 200
    body = updated.json()
    assert body["rivya"]["faults"]["task_failed"]["CONTENT_BLOCKED"] == 1
    assert body["rivya"]["faults"]["task_failed"]["INFERENCE_FAILURE"] == 0  # merged, not replaced
    assert body["odirouter"]["faults"]["task_failed"]["CONTENT_BLOCKED"] == 0
    assert rivya.generate("now fails")["status"] == "failed"
    # a distribution is replaced whole, so no stray parameters of the old kind remain
    body = http.put(
        "/_sandbox/config", json={"rivya": {"latency": {"queued": {"dist": "uniform", "low": 1, "high": 2}}}}
    )
    assert body.json()["rivya"]["latency"]["queued"]["value"] is None


@pytest.mark.parametrize(
    ("partial", "fragment"),
    [
        ({"rivya": {"faults": {"http_5xx": 2}}}, "http_5xx"),
        ({"rivya": {"fautls": {}}}, "fautls"),
        ({"odirouter": {"latency": {"queued": {"dist": "uniform", "low": 1}}}}, "high"),
        ({"odirouter": {"latency": {"queued": {"dist": "fixed", "value": 1, "sigma": 2}}}}, "sigma"),
        ({"billing": {"odirouter_usd_per_image": {"8K": 0.5}}}, "8K"),
        ({"seed": "abc"}, "seed"),
    ],
)
def test_invalid_config_is_400_and_changes_nothing(sandbox, http, partial, fragment):
    before = http.get("/_sandbox/config").json()
    response = http.put("/_sandbox/config", json=partial)
    assert response.status_code == 400 and fragment in response.json()["detail"]
    assert http.get("/_sandbox/config").json() == before


def test_stats_count_tasks_states_and_responses(sandbox, rivya, odi):
    configure(sandbox, "rivya", faults={"task_failed": {"INFERENCE_TIMEOUT": 1.0}})
    rivya.generate("fails")
    configure(sandbox, "rivya", faults={"task_failed": {"INFERENCE_TIMEOUT": 0.0}})
    rivya.generate("works")
    rivya.get("gen_missing")
    configure(sandbox, "odirouter", latency=slow(queued=30), rate_limit={"max_concurrent_tasks": 1})
    odi.submit(prompt="waits")
    odi.submit(prompt="refused")
    stats = sandbox.stats()
    r, o = stats["rivya"], stats["odirouter"]
    assert r["tasks_created"] == 2
    assert r["tasks_by_state"] == {"queued": 0, "processing": 0, "succeeded": 1, "failed": 1, "canceled": 0}
    assert r["failures_by_type"] == {"INFERENCE_TIMEOUT": 1}
    assert r["responses"]["404"] == 1 and r["responses"]["200"] >= 4
    assert (o["tasks_created"], o["active_tasks"], o["rate_limited_429"]) == (1, 1, 1)
    assert o["tasks_by_state"]["queued"] == 1 and o["held_usd"] == 0.15


def test_unknown_admin_route_is_404(http):
    assert http.get("/_sandbox/nope").status_code == 404


def test_ledger_explains_every_wallet_movement(sandbox, rivya, odi):
    """initial + top-ups - sum(ledger) == balance, to the micro-dollar, after a mixed workload."""
    configure(sandbox, "rivya", faults={"task_failed": {"INFERENCE_FAILURE": 0.4}, "stuck_task": 0.1})
    configure(sandbox, "odirouter", faults={"task_failed": {"CONTENT_BLOCKED": 0.4}})
    for i in range(12):
        rivya.create(f"mix {i}", resolution=("1K", "2K", "4K")[i % 3])
        odi.submit(prompt=f"mix {i}", resolution=("1K", "2K", "4K")[i % 3])
    configure(sandbox, "odirouter", latency=slow(processing=30))
    running = odi.submit(prompt="cancel me").json()["request_id"]
    odi.cancel(running)
    configure(sandbox, "odirouter", latency=slow(queued=30))
    odi.cancel(odi.submit(prompt="cancel me too").json()["request_id"])
    sandbox.topup("rivya", 13)
    sandbox.topup("odirouter", 0.07)
    time.sleep(0.1)
    wallets = sandbox.wallets()
    for provider in ("rivya", "odirouter"):
        entries = sandbox.ledger(provider)
        charged = sum(Decimal(str(e["amount"])) for e in entries)
        w = wallets[provider]
        expected = Decimal(str(w["initial"])) + Decimal(str(w["topped_up"])) - charged
        assert Decimal(str(w["balance"])) == expected, provider
    rivya_kinds = [e["kind"] for e in sandbox.ledger("rivya")]
    assert rivya_kinds.count("reserve") == 12 and "refund" in rivya_kinds and "settle" in rivya_kinds
    odi_amounts = sorted({e["amount"] for e in sandbox.ledger("odirouter")})
    assert odi_amounts == [0.15, 0.30]
