"""Report frames as text: markdown tables (escaped, aligned, truncated) and the unicode cost chart."""

import pandas as pd
import pyarrow as pa

from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.costs.reports import credit_cost_report, provider_comparison
from nbpro_pipeline.presentation.report_tables import cost_chart_markdown, to_markdown
from tests.costs.builders import ledger, odirouter_mix, record

prices = PriceTable()


def test_to_markdown_renders_without_tabulate():
    report = credit_cost_report(odirouter_mix(), prices)
    md = to_markdown(report, columns=["provider", "resolution", "day", "succeeded", "final_cost", "cost_is_estimate"])
    lines = md.splitlines()
    assert lines[0].split("|")[1].strip() == "provider"
    assert set(lines[1].replace("|", "").replace(" ", "")) <= {"-", ":"}
    assert lines[1].count(":") == 2  # succeeded and final_cost are right-aligned
    assert "| odirouter | 2K         | 2025-03-10 |         7 |        1.2 | yes              |" in lines
    assert len({len(line) for line in lines}) == 1  # aligned columns


def test_to_markdown_escapes_and_truncates():
    df = pd.DataFrame({"name": ["a|b", "line\nbreak", "c"], "n": [1.23456, float("nan"), 12345.6]})
    md = to_markdown(df, max_rows=2)
    assert "a\\|b" in md and "line break" in md
    assert "1.235" in md
    assert "12,346" not in md and "_1 more rows not shown_" in md
    assert to_markdown(df.iloc[:0]) == "_no rows_"


def test_cost_chart_markdown():
    rows = pa.concat_tables(
        [odirouter_mix(), ledger(*[record(f"r{i}") for i in range(10)], record("r4k", resolution="4K"))]
    )
    chart = cost_chart_markdown(credit_cost_report(rows, prices), title="Cost by cell")
    assert chart.startswith("**Cost by cell**\n\n```\n")
    body = chart.split("```")[1].strip().splitlines()
    assert [line.split()[0] for line in body] == ["rivya|2K", "rivya|4K", "odirouter|2K", "odirouter|4K"]
    assert "$1.344 (80 credits)" in body[0]  # 80 credits x 0.0168
    assert body[0].count("█") == 30  # the largest bar fills the width
    assert body[2].rstrip().endswith("$1.20 *")
    assert "estimate" in chart and "USD per credit" in chart
    native = cost_chart_markdown(provider_comparison(rows, prices), value="final_cost")
    assert "odirouter|4K" in native


def test_cost_chart_of_an_empty_report():
    assert cost_chart_markdown(credit_cost_report(ledger(), prices)) == "_no costs recorded yet_"
