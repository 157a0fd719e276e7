"""The column-wise FOCUS table equals the row-at-a-time reference on random ledgers: every column of
every row, credits, refunds, skipped rows, missing task ids and odd text included; and the streamed
export writes exactly that table with totals equal to the ledger's."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from nbpro_pipeline.costs.focus import billed_by_provider, export_focus, focus_table
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import LedgerWriter, Storage, read_ledger
from tests.costs.builders import ledger, record
from tests.costs.focus_reference import reference_focus_table

ODD_URIS = ["file:///data/prompts.csv", 's3://b/"quoted"\\dir/t.csv', "file:///données/名前.csv"]


def random_records(rng: random.Random, n: int):
    out = []
    for i in range(n):
        provider = rng.choice(["rivya", "odirouter"])
        status = rng.choice(["succeeded", "succeeded", "failed", "skipped"])
        cost = rng.choice([None, 0, "-8", "0.15", "0.000001", "12"]) if status != "skipped" else 0
        at = datetime(2025, 1, 31, 23, 0, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 180))  # a month's edge
        extra = {}
        if rng.random() < 0.3:
            extra["finished_at"] = None
        task = rng.choice([f"task-{i}", None, ""])
        rec = record(
            f"p{i}",
            provider=provider,
            resolution=rng.choice(["1K", "2K", "4K"]),
            status=status,
            cost=cost,
            error_code=rng.choice([None, "", "generation_failed", "size_mismatch"]) if status != "succeeded" else None,
            at=at,
            source_uri=rng.choice(ODD_URIS),
            task_id=task,
            **extra,
        )
        usd = PriceTable().to_usd(Provider(provider), rec.final_cost).quantize(Decimal("0.000001"))
        usd = usd if rng.random() < 0.8 else None
        out.append(rec.model_copy(update={"estimated_usd": usd}))
    return out


def by_prompt(table):
    return table.sort_by("x_PromptId").to_pylist()


@pytest.mark.parametrize("seed", range(6))
def test_the_columnwise_table_equals_the_row_reference(seed):
    table = ledger(*random_records(random.Random(seed), 120))
    got, want = focus_table(table), reference_focus_table(table)
    assert got.schema == want.schema
    assert by_prompt(got) == by_prompt(want)


def test_accounts_and_prices_reach_every_row():
    table = ledger(*random_records(random.Random(99), 40))
    prices = PriceTable().with_usd_per_unit({"rivya": Decimal("0.02")})
    accounts = {Provider.RIVYA: "acct-r", Provider.ODIROUTER: "acct-o"}
    assert by_prompt(focus_table(table, prices, accounts)) == by_prompt(reference_focus_table(table, prices, accounts))


@pytest.mark.slow
def test_the_streamed_export_writes_the_same_rows_and_the_ledgers_totals(tmp_path):
    storage = Storage(str(tmp_path / "root"))
    records = random_records(random.Random(7), 300)
    for i in range(0, len(records), 25):  # many parts, several cells
        for rec in records[i : i + 25]:
            writer = LedgerWriter(storage, rec.provider, rec.resolution, f"run-{i}", flush_rows=10**6)
            writer.add(rec)
            writer.flush()
    export = export_focus(storage, csv=True)
    written = pq.read_table(export.paths[0])
    whole = read_ledger(storage)
    assert by_prompt(written) == by_prompt(reference_focus_table(whole))
    assert export.rows == written.num_rows == pc.sum(pc.not_equal(whole["status"], "skipped")).as_py()
    assert {n: (export.billed[n], export.priced[n]) for n in export.billed} == billed_by_provider(written)
    for provider, name in ((Provider.RIVYA, "Rivya"), (Provider.ODIROUTER, "OdiRouter")):
        mine = whole.filter(pc.equal(whole["provider"], provider.value))
        assert export.priced[name] == sum(mine["final_cost"].to_pylist(), Decimal(0))
    assert export.paths[1].endswith(".csv")
