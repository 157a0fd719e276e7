"""State survives restarts on the same directory; billing happens even while nobody polls (or runs)."""

from __future__ import annotations

import io
import sqlite3
import time

import httpx
from PIL import Image

from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer
from tests.sandbox.conftest import OdiWire, RivyaWire, slow, wire_client


def open_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (30, 20)).save(buf, "PNG")
    return buf.getvalue()


def clients(server: SandboxServer) -> tuple[httpx.Client, httpx.Client]:
    return (
        wire_client(server.base_url, headers={"Authorization": "Bearer rvya_sk_persist"}),
        wire_client(server.odirouter_url, headers={"Authorization": "Bearer odr_persist"}),
    )


def test_wallets_ledger_tasks_files_and_keys_survive_a_restart(tmp_path):
    state = tmp_path / "state"
    with SandboxServer(state, SandboxConfig.zero_latency()) as first:
        r, o = clients(first)
        with r, o:
            rivya, odi = RivyaWire(r), OdiWire(o)
            task = rivya.generate("persist me")
            created = rivya.create("keyed", idempotency_key="persist-key").json()
            upload = r.post("/api/v1/files", files={"file": ("a.png", open_png())}, data={"kind": "image"}).json()
            odi_result = odi.generate(prompt="persist odi", resolution="4K")
            first.topup("rivya", 100)
            ledger_before = first.ledger()
            wallets_before = first.wallets()
            image_before = r.get(task["result"]["primary_url"]).content
    with SandboxServer(state, SandboxConfig.zero_latency()) as second:
        r, o = clients(second)
        with r, o:
            rivya, odi = RivyaWire(r), OdiWire(o)
            assert second.ledger() == ledger_before
            assert second.wallets() == wallets_before
            assert rivya.credits() == 100_000 - 16 + 100
            again = rivya.get(task["id"]).json()
            assert again["status"] == "succeeded"
            assert r.get(again["result"]["primary_url"]).content == image_before
            assert r.get(task["result"]["primary_url"].replace(str(first.port), str(second.port))).status_code == 200
            replay = rivya.create("keyed", idempotency_key="persist-key")
            assert replay.json()["id"] == created["id"]
            assert r.get(f"/api/v1/files/{upload['id']}").json()["mimeType"] == "image/png"
            assert odi.status(odi_result["request_id"]).json()["status"] == "COMPLETED"
            assert second.stats()["rivya"]["tasks_created"] == 2
            assert second.ledger() == ledger_before  # the replay charged nothing


def test_a_task_finishing_while_the_server_is_down_is_billed_at_restart(tmp_path):
    # long enough that both tasks are still running when the first server is read and stopped, even
    # beside a parallel run's other workers (0.3 s was not); the restart waits only for the finish
    processing = 2.0
    state = tmp_path / "state"
    config = SandboxConfig.zero_latency().updated(
        {"rivya": {"latency": slow(processing=processing)}, "odirouter": {"latency": slow(processing=processing)}}
    )
    with SandboxServer(state, config) as first:
        r, o = clients(first)
        with r, o:
            task_id = RivyaWire(r).create("while down").json()["id"]
            request_id = OdiWire(o).submit(prompt="while down").json()["request_id"]
        ledger = first.ledger()
        assert [e["kind"] for e in ledger] == ["reserve"]
    time.sleep(max(0.0, ledger[0]["at"] + processing + 0.1 - time.time()))
    with SandboxServer(state, config) as second:
        entries = {(e["task_id"], e["kind"], e["amount"]) for e in second.ledger()}
        assert entries == {(task_id, "reserve", 8), (task_id, "settle", 0), (request_id, "charge", 0.15)}
        settle = next(e for e in second.ledger() if e["kind"] == "settle")
        reserve = next(e for e in second.ledger() if e["kind"] == "reserve")
        assert abs(settle["at"] - reserve["at"] - processing) < 0.01  # billed at the task's own finish time


def test_settlement_runs_in_the_background_without_any_request(sandbox, rivya, odi):
    sandbox.set_config({"rivya": {"latency": slow(processing=0.2)}, "odirouter": {"latency": slow(processing=0.2)}})
    task_id = rivya.create("nobody polls").json()["id"]
    request_id = odi.submit(prompt="nobody polls").json()["request_id"]
    time.sleep(0.45)
    # Read the database directly: any HTTP request would itself trigger settlement.
    with sqlite3.connect(sandbox.state_dir / "sandbox.db") as db:
        rows = db.execute("SELECT task_id, kind, amount FROM ledger ORDER BY seq").fetchall()
        balances = dict(db.execute("SELECT provider, balance FROM wallets").fetchall())
    assert rows == [(task_id, "reserve", 8), (task_id, "settle", 0), (request_id, "charge", 150_000)]
    assert balances == {"rivya": 100_000 - 8, "odirouter": 1_000_000_000 - 150_000}


def test_fresh_state_dir_gets_configured_wallets(tmp_path):
    config = SandboxConfig.zero_latency().updated(
        {"billing": {"rivya_initial_credits": 40, "odirouter_initial_usd": 2.5}}
    )
    with SandboxServer(tmp_path / "s", config) as server:
        wallets = server.wallets()
        assert wallets["rivya"]["balance"] == 40 and wallets["odirouter"]["balance"] == 2.5
    # A later start with other initial values does not overwrite existing wallets.
    with SandboxServer(tmp_path / "s", SandboxConfig.zero_latency()) as server:
        assert server.wallets()["rivya"]["balance"] == 40
