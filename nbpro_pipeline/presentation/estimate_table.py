"""``nbpro estimate`` as text: a table of the cells' estimates, the totals per unit and the notes that say
which figures are estimates."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pandas as pd

from nbpro_pipeline.costs._ledger import quantize_cost
from nbpro_pipeline.costs.estimate import CellEstimate
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.presentation.report_tables import format_usd, to_text


def _money(amount: Decimal) -> str:
    text = format(quantize_cost(amount).normalize(), "f")
    return text if amount else "0"


def render_estimates(estimates: Sequence[CellEstimate], prices: PriceTable, *, ledger_known: bool) -> str:
    """A text table of the estimates, a total per unit and the notes that say what is an estimate."""
    rows = []
    for e in estimates:
        mark = "*" if e.is_estimate else ""
        usd = e.cost_unit == "usd"
        rows.append(
            {
                "cell": e.cell,
                "eligible": e.eligible,
                "already done": e.already_succeeded if ledger_known else "-",
                "to generate": e.to_generate,
                "price/image": f"{format_usd(e.price_per_image)}{mark}"
                if usd
                else f"{_money(e.price_per_image)} credits",
                "cost": f"{format_usd(e.cost)}{mark}" if usd else f"{_money(e.cost)} credits",
                "≈ USD": f"{format_usd(e.estimated_usd)}{mark if usd else '†'}",
            }
        )
    out = [to_text(pd.DataFrame(rows), max_rows=len(rows) or 1)]
    credits = sum((e.cost for e in estimates if e.cost_unit == "credits"), Decimal(0))
    usd = sum((e.cost for e in estimates if e.cost_unit == "usd"), Decimal(0))
    all_usd = sum((e.estimated_usd for e in estimates), Decimal(0))
    parts = []
    if any(e.cost_unit == "credits" for e in estimates):
        parts.append(f"{_money(credits)} Rivya credits")
    if any(e.cost_unit == "usd" for e in estimates):
        parts.append(f"{format_usd(usd)} OdiRouter*")
    if parts:
        out.append(f"\nTotal: {' + '.join(parts)} (≈ {format_usd(all_usd)} in all)")
    notes = ["Assumes every request succeeds once (failed tasks are refunded or not billed)."]
    if any(e.is_estimate for e in estimates):
        notes.append(
            "* OdiRouter publishes no price: figures come from the configured price table "
            "(NBPRO_ODIROUTER_USD_1K/_2K/_4K)."
        )
    if any(e.cost_unit == "credits" for e in estimates):
        notes.append(
            f"† Rivya credits have no published USD price: assumes ${_money(prices.rivya_usd_per_credit)} per credit "
            "(NBPRO_RIVYA_USD_PER_CREDIT)."
        )
    if not ledger_known:
        notes.append("Without --ledger-root, images generated earlier are not subtracted.")
    out.append("\n" + "\n".join(notes))
    return "\n".join(out)
