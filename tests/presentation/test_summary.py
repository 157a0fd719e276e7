"""Report summaries fit the metadata panel (at most 8 columns), say their units and end with totals."""

from datetime import timedelta

from nbpro_pipeline.costs import PriceTable, reports
from nbpro_pipeline.presentation.summary import comparison_summary, cost_summary
from tests.costs.builders import T0, ledger, record


def _ledger():
    return ledger(
        record("a", provider="rivya", resolution="1K"),
        record("b", provider="rivya", resolution="1K", status="failed", error_code="size_mismatch", cost=8),
        record("a", provider="odirouter", resolution="1K", latency_s=2.0),
        record("a", provider="rivya", resolution="1K", at=T0 + timedelta(days=1), fingerprint="fp-2"),
    )


def _header(md: str) -> list[str]:
    return [c.strip() for c in md.splitlines()[0].strip("|").split("|")]


def test_cost_summary_has_units_a_totals_row_and_few_columns():
    md = cost_summary(reports.credit_cost_report(_ledger(), PriceTable()))
    assert _header(md) == ["cell", "images", "failed", "credits", "USD", "USD/img", "lost USD"]
    lines = md.splitlines()
    assert lines[2] == "| rivya 1K | 2 | 1 | 24 | $0.40 | $0.202 | $0.13 |"  # two days summed; per image: fails too
    assert lines[3] == "| odirouter 1K | 1 | 0 |  | $0.15 | $0.150 | $0.00 |"  # no credits: no unit mixed in
    total = next(line for line in lines if line.startswith("| **total**"))
    assert (
        total == "| **total** | **3** | **1** | **24** | **$0.55** | **$0.184** | $0.13 |"
    )  # (24 x 0.0168 + 0.15) / 3
    assert "{" not in md and " cr |" not in md


def test_comparison_summary_puts_usd_per_image_first():
    md = comparison_summary(reports.provider_comparison(_ledger(), PriceTable()))
    header = _header(md)
    assert len(header) <= 8 and header[:3] == ["cell", "images", "USD/img"]
    assert "| odirouter 1K | 1 | $0.150 | $0.150 |" in md  # its one image is usable
    assert md.splitlines()[-1].startswith("cr: credits") or "**total**" in md
