"""Reports written as Parquet: money exact as decimal128(38, 6), dates as date32, atomic, on any fsspec URI."""

from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq

from nbpro_pipeline.costs.report_parquet import write_report
from nbpro_pipeline.costs.reports import credit_cost_report, provider_comparison
from tests.costs.builders import ledger, odirouter_mix

D = Decimal


def test_write_report_keeps_money_exact_in_parquet(tmp_path, prices):
    report = credit_cost_report(odirouter_mix(), prices)
    path = write_report(report, tmp_path / "reports" / "credit_cost.parquet")
    table = pq.read_table(path)
    assert table.schema.field("final_cost").type == pa.decimal128(38, 6)
    assert table.schema.field("cost_per_success").type == pa.decimal128(38, 6)
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("provider").type == pa.string()
    assert table.column("final_cost").to_pylist() == [D("1.200000"), D("0.900000")]
    assert not [p for p in (tmp_path / "reports").iterdir() if p.name.startswith(".")]  # no tmp left


def test_write_report_to_an_fsspec_uri(prices):
    import fsspec

    comparison = provider_comparison(odirouter_mix(), prices)
    uri = "memory://nbpro-test/reports/provider_comparison.parquet"
    assert write_report(comparison, uri) == uri
    with fsspec.open(uri, "rb") as fh:
        table = pq.read_table(fh)
    assert table.num_rows == 2
    assert table.schema.field("common_cost").type == pa.decimal128(38, 6)
    assert table.schema.field("latency_p95_s").type == pa.float64()


def test_write_empty_report_types_money_columns(tmp_path, prices):
    path = write_report(credit_cost_report(ledger(), prices), tmp_path / "empty.parquet")
    assert pq.read_table(path).schema.field("final_cost").type == pa.decimal128(38, 6)
