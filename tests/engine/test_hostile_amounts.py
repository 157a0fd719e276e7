"""Absurd amounts from the provider: a stated cost of 10^12 or a negative one is not believed (booked at the
list price, flagged as an anomaly), and it never takes the other rows of its ledger flush down with it."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx

from nbpro_pipeline.providers import RivyaClient
from nbpro_pipeline.providers.registry import Provider
from tests.engine.conftest import prompt_rows
from tests.providers.conftest import FAST_POLL, FAST_RETRY

ABSURD = {"p000": 10**12, "p001": -1000, "p002": "1e40"}


class Rewriting(httpx.AsyncBaseTransport):
    """The real sandbox over the network, with the final credits of chosen prompts' tasks rewritten."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.task_prompt: dict[str, str] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content) if request.method == "POST" and request.content else None
        response = await self.inner.handle_async_request(request)
        if "/api/v1/generations" not in request.url.path:
            return response
        body = json.loads(await response.aread())
        if sent is not None:
            self.task_prompt[body["id"]] = sent["prompt"].rsplit(" ", 1)[-1]
        wanted = ABSURD.get(self.task_prompt.get(body.get("id"), ""))
        if wanted is not None and body.get("status") == "succeeded":
            body["final_credits"] = wanted
        return httpx.Response(response.status_code, headers={"Content-Type": "application/json"}, json=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_absurd_stated_amounts_are_booked_at_list_price_and_lose_no_row(harness, rivya_key):
    rows = prompt_rows(6)
    client = RivyaClient(harness.sandbox.rivya_url, rivya_key, retry=FAST_RETRY, poll=FAST_POLL, transport=Rewriting())
    report = await harness.runner(Provider.RIVYA, client).run(rows)
    assert report.succeeded == 6 and report.final_cost == 48
    ledger = {r["prompt_id"]: r for r in harness.rows(Provider.RIVYA)}
    assert len(ledger) == 6  # the valid rows of the flush are all there
    for prompt_id in ABSURD:
        row = ledger[prompt_id]
        assert row["final_cost"] == 8 and row["stated_cost"] is None and "outside" in row["cost_anomaly"]
        # the wire's figure is kept as said where it is a sane count, left out where it is not
        assert row["credits_final"] == (-1000 if prompt_id == "p001" else None)
    assert all(ledger[p]["cost_anomaly"] is None and ledger[p]["stated_cost"] == 8 for p in ("p003", "p004"))
    harness.assert_reconciles(Provider.RIVYA)
    assert sum(r["final_cost"] for r in ledger.values()) == Decimal(48)
