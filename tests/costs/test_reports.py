import json
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nbpro_pipeline.costs.latest_rows import failed_latest, latest_mask
from nbpro_pipeline.costs.report_columns import COMPARISON_COLUMNS, CREDIT_COST_COLUMNS
from nbpro_pipeline.costs.reports import credit_cost_report, failure_reasons, provider_comparison, totals_by_provider
from tests.costs.builders import T0, ledger, odirouter_mix, record

D = Decimal
DAY = T0.date()


# -- totals -------------------------------------------------------------------------------------------
def test_totals_by_provider_are_exact_decimals():
    rows = odirouter_mix()
    rows = pa.concat_tables([rows, ledger(record("r1"), record("r2"), record("r3", status="failed"))])
    totals = totals_by_provider(rows)
    assert totals == {"rivya": D(16), "odirouter": D("0.15") * 7 + D("0.30") * 3 + D("0.15")}
    assert totals["odirouter"] == D("2.10") and isinstance(totals["odirouter"], Decimal)
    assert list(totals) == ["rivya", "odirouter"]
    assert totals_by_provider(ledger()) == {}


def test_totals_stay_exact_over_many_rows():
    rows = ledger(*[record(f"p{i}", provider="odirouter", cost="0.1") for i in range(1000)])
    assert totals_by_provider(rows)["odirouter"] == D(100)  # float sum would give 99.9999999999986


# -- credit_cost_report -------------------------------------------------------------------------------
def test_credit_cost_report_groups_and_sums_exactly(prices):
    report = credit_cost_report(odirouter_mix(), prices)
    assert list(report.columns) == CREDIT_COST_COLUMNS
    assert list(zip(report.provider, report.resolution, strict=True)) == [("odirouter", "2K"), ("odirouter", "4K")]
    two_k, four_k = report.to_dict("records")
    assert two_k["day"] == DAY
    assert (two_k["requests"], two_k["succeeded"], two_k["failed"], two_k["skipped"]) == (10, 7, 2, 1)
    assert two_k["final_cost"] == D("1.20") and isinstance(two_k["final_cost"], Decimal)
    assert two_k["cost_lost_to_failures"] == D("0.15")
    assert two_k["cost_per_success"] == D("0.171429")  # 1.20 / 7, at the ledger's 6 places
    assert two_k["expected_cost"] == D("1.05")
    assert two_k["cost_delta"] == D("0.15")
    assert two_k["estimated_usd"] == D("1.20")
    assert two_k["cost_is_estimate"] is True
    assert two_k["cost_unit"] == "usd"
    assert json.loads(two_k["failures_by_reason"]) == {"INFERENCE_FAILURE": 1, "size_mismatch": 1}
    assert json.loads(two_k["skips_by_reason"]) == {"budget_exceeded": 1}
    assert pd.isna(two_k["credits_reserved"])
    assert four_k["final_cost"] == D("0.90") and four_k["cost_delta"] == 0
    assert sum(report.final_cost, D(0)) == D("0.15") * 7 + D("0.30") * 3 + D("0.15")


def test_rivya_reserved_vs_final_and_usd(prices):
    rows = ledger(
        record("a"),
        record("b"),
        record("c", status="failed", error_code="generation_failed"),  # reserved 8, refunded
    )
    (row,) = credit_cost_report(rows, prices).to_dict("records")
    assert (row["credits_reserved"], row["credits_final"]) == (24, 16)
    assert row["final_cost"] == 16 and row["cost_lost_to_failures"] == 0
    assert row["cost_per_success"] == 8
    assert row["estimated_usd"] == D(16) * prices.to_usd("rivya", Decimal(1))
    assert row["cost_is_estimate"] is False
    assert row["cost_unit"] == "credits"


def test_report_splits_by_day_and_source(prices):
    rows = ledger(
        record("a", source_uri="s3://b/one.csv"),
        record("b", source_uri="s3://b/two.csv"),
        record("c", source_uri="s3://b/one.csv", at=T0 + timedelta(days=1)),
        record("d", source_uri="s3://b/one.csv", at=T0.replace(hour=23, minute=59)),
    )
    report = credit_cost_report(rows, prices)
    keys = list(zip(report.day, report.source_uri, report.requests, strict=True))
    assert keys == [
        (DAY, "s3://b/one.csv", 2),
        (DAY, "s3://b/two.csv", 1),
        (DAY + timedelta(days=1), "s3://b/one.csv", 1),
    ]


def test_failed_then_succeeded_rerun_costs_both_counts_both_but_is_resolved(prices):
    rows = ledger(
        record("p", provider="odirouter", status="failed", error_code="size_mismatch", cost="0.15", fingerprint="f"),
        record("p", provider="odirouter", at=T0 + timedelta(hours=1), fingerprint="f"),
        record("q", provider="odirouter", status="failed", error_code="download_failed", cost=0, fingerprint="g"),
    )
    assert latest_mask(rows).to_pylist() == [False, True, True]
    (row,) = credit_cost_report(rows, prices).to_dict("records")
    assert (row["succeeded"], row["failed"], row["failed_unresolved"]) == (1, 2, 1)
    assert row["final_cost"] == D("0.30")
    assert row["cost_per_success"] == D("0.30")


def test_failure_reasons_long_table():
    table = failure_reasons(odirouter_mix())
    assert table[["status", "error_code", "rows"]].values.tolist() == [
        ["failed", "INFERENCE_FAILURE", 1],
        ["failed", "size_mismatch", 1],
        ["skipped", "budget_exceeded", 1],
    ]
    assert table.cost.tolist() == [D(0), D("0.15"), D(0)]
    assert failure_reasons(ledger(record("ok"))).empty


def test_empty_ledger_gives_empty_reports(prices):
    assert list(credit_cost_report(ledger(), prices).columns) == CREDIT_COST_COLUMNS
    assert credit_cost_report(None, prices).empty
    assert list(provider_comparison(ledger(), prices).columns) == COMPARISON_COLUMNS


# -- provider_comparison ------------------------------------------------------------------------------
def test_provider_comparison(prices):
    rivya = [record(f"p{i}", latency_s=float(i)) for i in range(1, 101)]  # latencies 1..100
    odi = [record(f"p{i}", provider="odirouter", latency_s=2.0) for i in range(1, 51)]
    odi += [
        record("x", provider="odirouter", status="failed", error_code="size_mismatch", cost="0.15"),
        record("p99", provider="odirouter", status="failed", error_code="INFERENCE_FAILURE"),
    ]
    other_res = [record("p1", resolution="4K"), record("p1", provider="odirouter", resolution="4K", cost="0.30")]
    table = provider_comparison(ledger(*rivya, *odi, *other_res), prices)
    assert list(table.columns) == COMPARISON_COLUMNS
    assert list(zip(table.resolution, table.provider, strict=True)) == [
        ("2K", "rivya"),
        ("2K", "odirouter"),
        ("4K", "rivya"),
        ("4K", "odirouter"),
    ]
    r2, o2, r4, o4 = table.to_dict("records")
    assert r2["latency_p50_s"] == pytest.approx(50.5)
    assert r2["latency_p95_s"] == pytest.approx(95.05)
    assert o2["latency_p50_s"] == 2.0
    assert (r2["images"], r2["failure_rate"], r2["size_mismatches"]) == (100, 0.0, 0)
    assert (o2["images"], o2["failed"], o2["size_mismatches"]) == (50, 2, 1)
    assert o2["failure_rate"] == pytest.approx(2 / 52)
    assert r2["final_cost"] == 800 and r2["cost_per_image"] == 8
    assert o2["final_cost"] == D("7.65")  # 50 x 0.15 + a billed wrong-size image
    assert o2["cost_per_image"] == D("0.153")
    assert o2["price_per_image"] == D("0.15")
    assert o2["cost_is_estimate"] and not r2["cost_is_estimate"]
    # common prompts: p1..p50 succeeded on both; p99 failed on OdiRouter, x never ran on Rivya
    assert r2["common_prompts"] == o2["common_prompts"] == 50
    assert r2["common_cost"] == 400
    assert r2["common_cost_usd"] == D(400) * prices.to_usd("rivya", Decimal(1))
    assert o2["common_cost"] == D("7.50") and o2["common_cost_per_image_usd"] == D("0.15")
    assert r4["common_prompts"] == o4["common_prompts"] == 1
    assert o4["common_cost"] == D("0.30")


def test_comparison_with_one_provider_has_no_common_prompts(prices):
    table = provider_comparison(ledger(record("a"), record("b", status="failed", latency_s=None)), prices)
    (row,) = table.to_dict("records")
    assert row["common_prompts"] == 0 and row["common_cost"] == 0
    assert row["failure_rate"] == 0.5
    assert row["latency_p50_s"] == 1.0


def test_comparison_without_successes_has_no_per_image_cost(prices):
    (row,) = provider_comparison(ledger(record("a", status="failed", latency_s=None)), prices).to_dict("records")
    assert row["images"] == 0 and row["cost_per_image"] is None
    assert np.isnan(row["latency_p50_s"])


def test_report_day_uses_utc(prices):
    from datetime import datetime, timezone

    late_in_new_york = datetime(2025, 3, 10, 22, 0, tzinfo=timezone(timedelta(hours=-5)))  # 03:00 UTC next day
    (row,) = credit_cost_report(ledger(record("a", at=late_in_new_york)), prices).to_dict("records")
    assert row["day"] == date(2025, 3, 11)


# -- over a storage root, cell by cell ------------------------------------------------------------------
def _mixed_records():
    rows = [
        record("s1", provider="rivya", resolution="2K", fingerprint="f1", prompt_sha256="h1"),
        record("s1", provider="odirouter", resolution="2K", fingerprint="g1", prompt_sha256="h1"),
        record("s2", provider="rivya", resolution="2K", status="failed", error_code="content_policy", cost=2),
        record("s2", provider="rivya", resolution="2K", at=T0 + timedelta(hours=1), fingerprint="fp-rivya-2K-s2"),
        record("s3", provider="odirouter", resolution="2K", status="failed", error_code="size_mismatch", cost="0.15"),
        record("s4", provider="rivya", resolution="4K", at=T0 + timedelta(days=1), source_uri="s3://b/other.csv"),
        record("s5", provider="odirouter", resolution="1K", status="skipped", error_code="budget_exceeded"),
    ]
    return rows + _odirouter_records()


def _odirouter_records():
    return [record(f"m{i}", provider="odirouter", resolution="2K", latency_s=1.0 + i) for i in range(5)]


def _write_cells(storage, records):
    from nbpro_pipeline.storage import LedgerWriter

    by_cell = {}
    for r in records:
        by_cell.setdefault((r.provider, r.resolution), []).append(r)
    for (p, res), rows in by_cell.items():
        writer = LedgerWriter(storage, p, res, "run", flush_rows=2)
        for row in rows:
            writer.add(row)
        writer.flush()


def test_reports_over_a_storage_root_equal_the_reports_of_the_whole_table(tmp_path, prices):
    from nbpro_pipeline.costs.reports import credit_cost_report_for, provider_comparison_for, totals_for
    from nbpro_pipeline.storage import Storage

    storage = Storage(tmp_path / "root")
    records = _mixed_records()
    _write_cells(storage, records)
    whole = ledger(*records)
    pd.testing.assert_frame_equal(credit_cost_report_for(storage, prices), credit_cost_report(whole, prices))
    pd.testing.assert_frame_equal(provider_comparison_for(storage, prices), provider_comparison(whole, prices))
    assert totals_for(storage) == totals_by_provider(whole)
    common = provider_comparison_for(storage, prices).set_index(["provider", "resolution"])
    assert common.loc[("rivya", "2K"), "common_prompts"] == 1  # s1 succeeded on both providers at 2K


def test_reports_over_an_empty_root_are_empty_with_their_columns(tmp_path, prices):
    from nbpro_pipeline.costs.reports import credit_cost_report_for, provider_comparison_for
    from nbpro_pipeline.storage import Storage

    storage = Storage(tmp_path / "empty")
    assert list(credit_cost_report_for(storage, prices).columns) == CREDIT_COST_COLUMNS
    assert list(provider_comparison_for(storage, prices).columns) == COMPARISON_COLUMNS


def test_failed_latest_equals_failed_and_latest_over_random_rows():

    rng = np.random.default_rng(3)
    rows = [
        record(
            f"p{rng.integers(0, 15)}",
            provider=str(rng.choice(["rivya", "odirouter"])),
            status=str(rng.choice(["succeeded", "failed", "skipped"])),
            at=T0 + timedelta(minutes=int(rng.integers(0, 5))),  # many ties
        )
        for _ in range(300)
    ]
    table = ledger(*rows)
    failed = pa.array([r.status == "failed" for r in rows])
    expected = pa.compute.and_(failed, latest_mask(table)).to_pylist()
    assert failed_latest(table).to_pylist() == expected
    assert any(expected) and not all(expected)
