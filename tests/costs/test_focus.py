"""The FOCUS export: one row per charge, exact decimals, and totals equal to the ledger's per provider,
to the cent and to the credit (after a Parquet and a CSV round trip too)."""

from __future__ import annotations

import csv
import json
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from nbpro_pipeline.costs.focus import billed_by_provider, export_focus, focus_table
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, read_ledger
from nbpro_pipeline.storage.ledger import LedgerWriter
from tests.costs.builders import ledger, record
from tests.costs.focus_reference import RIVYA_CREDITS
from tests.engine.conftest import harness, prompt_rows  # noqa: F401  (harness is a fixture)


def priced(prompt_id: str, provider: str = "rivya", **kw):
    """A ledger row as the engine writes it: a task id and the USD view of its cost."""
    rec = record(prompt_id, provider=provider, task_id=f"task-{prompt_id}", **kw)
    usd = PriceTable().to_usd(Provider(provider), rec.final_cost)
    return rec.model_copy(update={"estimated_usd": usd})


MIXED = [
    priced("a", resolution="1K"),
    priced("b", resolution="4K"),
    priced("c", status="failed", error_code="generation_failed"),  # refunded: 0 credits
    priced("d", cost=-8, status="failed", error_code="generation_failed"),  # a resumed task's refund
    priced("e", provider="odirouter", resolution="4K"),
    priced("f", provider="odirouter", status="failed", error_code="size_mismatch", cost="0.15"),  # billed
    priced("g", provider="odirouter", status="skipped", error_code="budget_exhausted"),  # never sent
]


def ledger_totals(table) -> dict[str, tuple[Decimal, Decimal]]:
    """Per provider: (USD the ledger implies, amount in the provider's own unit)."""
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for r in table.to_pylist():
        usd = r["estimated_usd"] if r["provider"] == "rivya" else r["final_cost"]
        name = {"rivya": "Rivya", "odirouter": "OdiRouter"}[r["provider"]]
        b, p = out.get(name, (Decimal(0), Decimal(0)))
        out[name] = (b + (usd or 0), p + r["final_cost"])
    return out


def test_totals_equal_the_ledger_per_provider_exactly():
    table = ledger(*MIXED)
    focus = focus_table(table)
    assert focus.num_rows == 6  # the skipped row reached no provider and is no charge
    assert billed_by_provider(focus) == ledger_totals(table)
    assert billed_by_provider(focus)["Rivya"] == (Decimal("0.1344"), Decimal(8))  # 8 + 8 + 0 - 8 credits, x 0.0168


def test_columns_say_what_each_charge_was():
    rows = {r["x_PromptId"]: r for r in focus_table(ledger(*MIXED)).to_pylist()}
    a, d, e = rows["a"], rows["d"], rows["e"]
    assert a["ServiceCategory"] == "AI and Machine Learning" and a["ChargeCategory"] == "Usage"
    assert a["SkuId"] == "nano-banana-pro:1K" and rows["b"]["SkuId"] == "nano-banana-pro:4K"
    assert a["ResourceId"] == "task-a" and a["ConsumedQuantity"] == 1 and a["ConsumedUnit"] == "Images"
    assert a["PricingCurrency"] == RIVYA_CREDITS and a["PricingCurrencyEffectiveCost"] == 8
    assert a["BillingCurrency"] == "USD" and a["BilledCost"] == Decimal("0.1344") == a["EffectiveCost"]
    assert json.loads(a["Tags"]) == {"x_table": "file:///data/prompts.csv", "x_cell": "rivya|1K", "x_run": a["x_RunId"]}
    assert a["x_CostIsEstimate"] and e["x_CostIsEstimate"]  # credits -> USD and OdiRouter's table: both assumed
    assert a["x_CostSource"] == "provider-reported credits" and e["x_CostSource"] == "configured price table"
    assert d["ChargeCategory"] == "Credit" and d["BilledCost"] < 0 and d["ConsumedQuantity"] is None
    assert rows["c"]["ConsumedQuantity"] == 0 and rows["f"]["ConsumedQuantity"] == 1
    assert e["PricingCurrency"] == "USD" and e["BilledCost"] == Decimal("0.30") == e["ListCost"]


def test_the_1_3_provider_columns_name_who_served_and_hosted_each_charge():
    """FOCUS 1.3: ServiceProviderName and HostProviderName MUST be present, strings, never null; ProviderName
    and PublisherName are deprecated but still required, so they stay. Neither provider names its host, and
    FOCUS lets HostProviderName equal the service provider then."""
    focus = focus_table(ledger(*MIXED))
    for column in ("ServiceProviderName", "HostProviderName", "ProviderName", "PublisherName"):
        assert focus.schema.field(column).type == "string" and focus[column].null_count == 0, column
    rows = {r["x_PromptId"]: r for r in focus.to_pylist()}
    for prompt_id, name in (("a", "Rivya"), ("e", "OdiRouter")):
        row = rows[prompt_id]
        assert row["ServiceProviderName"] == row["HostProviderName"] == row["ProviderName"] == name
        assert row["PublisherName"] == "Google" and row["ServiceName"] == f"{name} Nano Banana Pro"


def test_a_provider_that_names_its_host_is_exported_with_it(monkeypatch):
    from nbpro_pipeline.providers.registry import PROVIDERS

    hosted = PROVIDERS.traits("odirouter").model_copy(update={"host_provider_name": "Example Cloud"})
    real = PROVIDERS.traits
    monkeypatch.setattr(PROVIDERS, "traits", lambda name: hosted if name == "odirouter" else real(name))
    rows = {r["x_PromptId"]: r for r in focus_table(ledger(*MIXED)).to_pylist()}
    assert rows["e"]["HostProviderName"] == "Example Cloud" and rows["e"]["ServiceProviderName"] == "OdiRouter"
    assert rows["a"]["HostProviderName"] == "Rivya"


def test_parquet_and_csv_round_trips_keep_every_cent(tmp_path):
    storage = Storage(tmp_path / "store")
    for rec in MIXED:
        writer = LedgerWriter(storage, rec.provider, rec.resolution, rec.run_id)
        writer.add(rec)
        writer.flush()
    result = export_focus(storage, csv=True)
    expected = ledger_totals(read_ledger(storage))
    assert {n: (result.billed[n], result.priced[n]) for n in result.billed} == expected
    parquet, csv_path = result.paths
    assert billed_by_provider(pq.read_table(parquet)) == expected
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    from_csv: dict[str, tuple[Decimal, Decimal]] = {}
    for r in rows:
        b, p = from_csv.get(r["ProviderName"], (Decimal(0), Decimal(0)))
        from_csv[r["ProviderName"]] = (b + Decimal(r["BilledCost"]), p + Decimal(r["PricingCurrencyEffectiveCost"]))
    assert from_csv == expected


@pytest.mark.parametrize("provider", list(Provider), ids=lambda p: p.value)
async def test_a_real_run_exports_what_the_provider_billed(harness, provider):  # noqa: F811
    harness.configure(provider, faults={"task_failed": {"CONTENT_BLOCKED": 0.3}})
    await harness.run(provider, prompt_rows(10))
    result = export_focus(harness.storage)
    name = {"rivya": "Rivya", "odirouter": "OdiRouter"}[provider.value]
    assert result.priced[name] == harness.sandbox_total(provider) == harness.ledger_total(provider)
