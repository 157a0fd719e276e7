"""``nbpro estimate`` as text: a table of the cells' estimates, the totals per unit and the notes that say
which figures are estimates."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pandas as pd

from nbpro_pipeline.costs._ledger import quantize_cost
from nbpro_pipeline.costs.estimate import CellEstimate, by_provider
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.presentation.report_tables import format_usd, to_text
from nbpro_pipeline.providers.registry import PROVIDERS


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
    all_usd = sum((e.estimated_usd for e in estimates), Decimal(0))
    parts = [_total(provider, mine) for provider, mine in by_provider(estimates).items()]
    if parts:
        out.append(f"\nTotal: {' + '.join(parts)} (≈ {format_usd(all_usd)} in all)")
    notes = ["Assumes every request succeeds once (failed tasks are refunded or not billed)."]
    notes.extend(_price_notes(estimates, prices))
    if not ledger_known:
        notes.append("Without --ledger-root, images generated earlier are not subtracted.")
    out.append("\n" + "\n".join(notes))
    return "\n".join(out)


def _total(provider: str, mine: list[CellEstimate]) -> str:
    cost, name = sum((e.cost for e in mine), Decimal(0)), PROVIDERS.traits(provider).display_name
    mark = "*" if any(e.is_estimate for e in mine) else ""
    return f"{format_usd(cost)} {name}{mark}" if mine[0].cost_unit == "usd" else f"{_money(cost)} {name} credits"


def _price_notes(estimates: Sequence[CellEstimate], prices: PriceTable) -> list[str]:
    """Where each provider's figures come from, with the variables that change them."""
    notes = []
    for provider, mine in by_provider(estimates).items():
        entry, prefix = PROVIDERS[provider], f"NBPRO_{PROVIDERS[provider].env_prefix}"
        if any(e.is_estimate for e in mine):
            notes.append(f"* {entry.traits.price_note} ({prefix}_PRICE, {prefix}_PRICE_1K/_2K/_4K).")
        if mine[0].cost_unit != "usd":
            rate = _money(prices.to_usd(provider, Decimal(1)))
            notes.append(
                f"† {entry.traits.display_name} {mine[0].cost_unit} have no published USD price: assumes ${rate} "
                f"per {mine[0].cost_unit.rstrip('s')} ({prefix}_USD_PER_UNIT)."
            )
    return notes
