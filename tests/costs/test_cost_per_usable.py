"""Cost per usable image beside cost per image: the same money over the images not judged blank, a
duplicate or a copy of their reference (rows from before the verdict count as usable)."""

from __future__ import annotations

from decimal import Decimal

from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.costs.reports import credit_cost_report, provider_comparison
from tests.costs.builders import ledger, record


def mixed():
    return ledger(
        record("a", usability="usable"),
        record("b", usability="blank"),
        record("c", usability="duplicate", duplicate_of="t-a"),
        record("d"),  # written before usability was judged
        record("e", status="failed", error_code="size_mismatch", cost=8),
    )


def test_the_comparison_gives_cost_per_usable_image_beside_cost_per_image():
    row = provider_comparison(mixed(), PriceTable()).iloc[0]
    assert (row["images"], row["usable_images"]) == (4, 2)
    assert row["cost_per_image"] == Decimal(10) and row["cost_per_usable_image"] == Decimal(20)
    assert row["cost_per_usable_image_usd"] == row["cost_per_usable_image"] * (
        row["cost_per_image_usd"] / row["cost_per_image"]
    )


def test_the_cost_report_gives_cost_per_usable_beside_cost_per_success():
    row = credit_cost_report(mixed(), PriceTable()).iloc[0]
    assert (row["succeeded"], row["usable"]) == (4, 2)
    assert (row["cost_per_success"], row["cost_per_usable"]) == (Decimal(10), Decimal(20))
