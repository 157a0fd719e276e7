"""Column schemas: every report column is described, and types come from the written tables."""

from nbpro_pipeline.costs import PriceTable, reports
from nbpro_pipeline.costs.report_columns import COMPARISON_COLUMNS, CREDIT_COST_COLUMNS
from nbpro_pipeline.costs.report_parquet import report_to_arrow
from nbpro_pipeline.models.ledger import LEDGER_SCHEMA
from nbpro_pipeline.presentation.columns import REPORT_COLUMN_DOCS, column_docs
from tests.costs.builders import ledger, record


def test_every_report_column_has_a_description():
    missing = [c for c in [*CREDIT_COST_COLUMNS, *COMPARISON_COLUMNS] if c not in REPORT_COLUMN_DOCS]
    assert missing == []


def test_a_reports_schema_has_its_written_types_and_descriptions():
    df = reports.credit_cost_report(ledger(record("a", provider="rivya", resolution="1K")), PriceTable())
    docs = {c.name: c for c in column_docs(report_to_arrow(df).schema, REPORT_COLUMN_DOCS)}
    assert list(docs) == list(df.columns)
    assert docs["final_cost"].type == "decimal128(38, 6)" and docs["day"].type == "date32[day]"
    assert docs["cost_per_success_usd"].description.startswith("estimated_usd / succeeded")
    assert {c.name for c in column_docs(LEDGER_SCHEMA)} >= {"final_cost", "image_uri", "run_id"}
