"""The reports read a cell at a time in batches equal a Python-``Decimal`` reference on random ledgers
with awkward amounts, however the rows are cut into parts and batches, before and after compaction."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from nbpro_pipeline.costs import scan
from nbpro_pipeline.costs.reports import (
    credit_cost_report,
    credit_cost_report_for,
    provider_comparison,
    provider_comparison_for,
    totals_by_provider,
    totals_for,
    totals_of_report,
)
from nbpro_pipeline.storage import LedgerWriter, Storage, compact_ledger
from tests.costs.builders import T0, ledger, record

# amounts that a float sum, a too-narrow decimal or a rounding on the way would get wrong
AWKWARD = ["0.000001", "0.1", "0.2", "0.3", "999999.999999", "0.333333", "1e-6", "12.5", "0", "7.000001"]


def _v(value) -> str:
    """An enum field's value (``LedgerRecord`` keeps some as plain strings)."""
    return getattr(value, "value", value)


def _random_records(seed: int, n: int = 400) -> list:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        provider = str(rng.choice(["rivya", "odirouter"]))
        status = str(rng.choice(["succeeded", "failed", "skipped"], p=[0.6, 0.3, 0.1]))
        prompt = f"p{rng.integers(0, 60)}"
        rows.append(
            record(
                prompt,
                provider=provider,
                resolution=str(rng.choice(["1K", "2K"])),
                status=status,
                cost=None if rng.random() < 0.1 else str(rng.choice(AWKWARD)),
                error_code=None if status == "succeeded" or rng.random() < 0.2 else str(rng.choice(["a", "b"])),
                at=T0 + timedelta(days=int(rng.integers(0, 4)), seconds=i),  # distinct: no tie to break
                source_uri=f"s3://b/{rng.integers(0, 3)}.csv",
                latency_s=float(rng.lognormal(2, 0.5)) if rng.random() < 0.9 else None,
                credits_reserved=None if provider == "odirouter" else int(rng.integers(0, 20)),
                credits_final=None if provider == "odirouter" else int(rng.integers(0, 20)),
            )
        )
    return rows


def _store(tmp_path, records, *, flush_rows: int) -> Storage:
    storage = Storage(tmp_path / "root")
    by_cell = defaultdict(list)
    for r in records:
        by_cell[(r.provider, r.resolution)].append(r)
    for (provider, resolution), rows in by_cell.items():
        writer = LedgerWriter(storage, provider, resolution, "run", flush_rows=flush_rows)
        for row in sorted(rows, key=lambda r: r.recorded_at):
            writer.add(row)
        writer.flush()
    return storage


def _reference_cost(records) -> dict[tuple, dict]:
    """The report's figures per (provider, resolution, day, source), in Python ``Decimal``s."""
    latest = {}
    for r in records:
        key = (_v(r.provider), _v(r.resolution), r.fingerprint)
        if key not in latest or r.recorded_at > latest[key].recorded_at:
            latest[key] = r
    out: dict[tuple, dict] = defaultdict(
        lambda: {"requests": 0, "final_cost": Decimal(0), "lost": Decimal(0), "unresolved": 0, "status": Counter()}
    )
    for r in records:
        g = out[(_v(r.provider), _v(r.resolution), r.recorded_at.date(), r.source_uri)]
        cost = r.final_cost or Decimal(0)
        g["requests"] += 1
        g["status"][_v(r.status)] += 1
        g["final_cost"] += cost
        g["lost"] += cost if _v(r.status) == "failed" else 0
        is_latest = latest[(_v(r.provider), _v(r.resolution), r.fingerprint)] is r
        g["unresolved"] += _v(r.status) == "failed" and is_latest
        if _v(r.status) != "succeeded":
            g.setdefault(_v(r.status), Counter())[r.error_code or "unknown"] += 1
        for name in ("credits_reserved", "credits_final"):
            value = getattr(r, name)
            if value is not None:
                g[name] = g.get(name, 0) + value
    return out


def _check_cost(df: pd.DataFrame, records) -> None:
    reference = _reference_cost(records)
    assert len(df) == len(reference)
    for row in df.to_dict("records"):
        want = reference[(row["provider"], row["resolution"], row["day"], row["source_uri"])]
        assert row["requests"] == want["requests"]
        assert (row["succeeded"], row["failed"], row["skipped"]) == tuple(
            want["status"][s] for s in ("succeeded", "failed", "skipped")
        )
        assert isinstance(row["final_cost"], Decimal) and row["final_cost"] == want["final_cost"]
        assert row["cost_lost_to_failures"] == want["lost"]
        assert row["failed_unresolved"] == want["unresolved"]
        assert json.loads(row["failures_by_reason"]) == dict(want.get("failed", {}))
        assert json.loads(row["skips_by_reason"]) == dict(want.get("skipped", {}))
        for name in ("credits_reserved", "credits_final"):
            assert (None if pd.isna(row[name]) else row[name]) == want.get(name)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_credit_cost_report_equals_a_decimal_reference_however_it_is_read(tmp_path, prices, monkeypatch, seed):
    records = _random_records(seed)
    whole = credit_cost_report(ledger(*records), prices)
    _check_cost(whole, records)
    storage = _store(tmp_path, records, flush_rows=7)  # many small parts
    monkeypatch.setattr(scan, "BATCH_ROWS", 23)  # batches that cut parts' groups and fingerprints apart
    pd.testing.assert_frame_equal(credit_cost_report_for(storage, prices), whole)
    compact_ledger(storage, min_age_s=0)
    pd.testing.assert_frame_equal(credit_cost_report_for(storage, prices), whole)
    monkeypatch.setattr(scan, "BATCH_ROWS", 100_000)
    pd.testing.assert_frame_equal(credit_cost_report_for(storage, prices), whole)


def test_totals_equal_a_decimal_reference(tmp_path, prices, monkeypatch):
    records = _random_records(5)
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for r in records:
        expected[_v(r.provider)] += r.final_cost or Decimal(0)
    storage = _store(tmp_path, records, flush_rows=5)
    monkeypatch.setattr(scan, "BATCH_ROWS", 11)
    assert totals_for(storage) == dict(expected) == totals_by_provider(ledger(*records))
    assert list(totals_for(storage)) == ["rivya", "odirouter"]
    assert totals_of_report(credit_cost_report_for(storage, prices)) == dict(expected)


def _reference_comparison(records) -> dict[tuple, dict]:
    cells: dict[tuple, list] = defaultdict(list)
    for r in records:
        cells[(_v(r.provider), _v(r.resolution))].append(r)
    key = lambda r: (r.prompt_id, r.prompt_sha256)  # noqa: E731
    out = {}
    for (provider, resolution), rows in cells.items():
        others = [c for c in cells if c[1] == resolution]
        ok_sets = [{key(r) for r in cells[c] if _v(r.status) == "succeeded"} for c in others]
        common = set.intersection(*ok_sets) if len(others) > 1 else set()
        ok = [r for r in rows if _v(r.status) == "succeeded"]
        out[(provider, resolution)] = {
            "requests": len(rows),
            "images": len({r.fingerprint for r in ok}),
            "final_cost": sum((r.final_cost or Decimal(0) for r in rows), Decimal(0)),
            "common_prompts": len(common),
            "common_cost": sum((r.final_cost or Decimal(0) for r in rows if key(r) in common), Decimal(0)),
            "latencies": [r.latency_s for r in ok if r.latency_s is not None],
            "size": sum(r.error_code == "size_mismatch" for r in rows),
        }
    return out


@pytest.mark.parametrize("seed", [3, 4])
def test_provider_comparison_equals_a_decimal_reference_however_it_is_read(tmp_path, prices, monkeypatch, seed):
    records = _random_records(seed)
    whole = provider_comparison(ledger(*records), prices)
    reference = _reference_comparison(records)
    assert len(whole) == len(reference)
    for row in whole.to_dict("records"):
        want = reference[(row["provider"], row["resolution"])]
        assert (row["requests"], row["images"], row["common_prompts"]) == (
            want["requests"],
            want["images"],
            want["common_prompts"],
        )
        assert isinstance(row["final_cost"], Decimal) and row["final_cost"] == want["final_cost"]
        assert row["common_cost"] == want["common_cost"]
        assert row["latency_p50_s"] == pytest.approx(float(np.percentile(want["latencies"], 50)))
        assert row["latency_p95_s"] == pytest.approx(float(np.percentile(want["latencies"], 95)))
    assert whole["common_prompts"].max() > 0  # the random ledgers do share prompts
    storage = _store(tmp_path, records, flush_rows=7)
    monkeypatch.setattr(scan, "BATCH_ROWS", 17)
    pd.testing.assert_frame_equal(provider_comparison_for(storage, prices), whole)
    compact_ledger(storage, min_age_s=0)
    pd.testing.assert_frame_equal(provider_comparison_for(storage, prices), whole)


def test_expected_cost_and_delta_round_once_from_an_unrounded_price(tmp_path):
    from nbpro_pipeline.costs.prices import PriceTable
    from nbpro_pipeline.models.common import Resolution

    odd = {Resolution.R1K: Decimal("0.1"), Resolution.R2K: Decimal("0.0000015"), Resolution.R4K: Decimal("1")}
    prices = PriceTable().with_per_image("odirouter", odd)
    rows = [record(f"a{i}", provider="odirouter", cost="0.000001") for i in range(3)]
    (row,) = credit_cost_report(ledger(*rows), prices).to_dict("records")
    assert row["expected_cost"] == Decimal("0.000004")  # 3 x 0.0000015 = 0.0000045, half-even
    assert row["cost_delta"] == Decimal("-0.000002")  # 0.000003 - 0.0000045 = -0.0000015, half-even


def test_what_the_provider_stated_is_reported_beside_the_table_price(prices):
    stated = record("s1", provider="odirouter", cost="0.134", stated_cost=Decimal("0.134"), list_price=Decimal("0.15"))
    plain = record("s2", provider="odirouter", cost="0.15", list_price=Decimal("0.15"))
    absurd = record(
        "s3", provider="odirouter", cost="0.15", list_price=Decimal("0.15"), cost_anomaly="stated cost 1e+12 outside"
    )
    (row,) = credit_cost_report(ledger(stated, plain, absurd), prices).to_dict("records")
    assert row["stated_vs_list"] == Decimal("-0.016") and row["cost_anomalies"] == 1
    assert row["final_cost"] == Decimal("0.434")
