"""What ``nbpro estimate`` needs beyond the estimate itself: reading a ledger dataset and rendering results.

The cost functions take ledger rows as a table; this is the one place in ``costs`` that reads them from
storage, straight from the hive-partitioned Parquet dataset so it depends on nothing but its layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from nbpro_pipeline.costs._ledger import quantize_cost
from nbpro_pipeline.costs.estimate import CellEstimate
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.providers.registry import PROVIDERS


def read_ledger_dataset(
    storage_root: str, *, storage_options: dict[str, Any] | None = None, columns: list[str] | None = None
) -> pa.Table | None:
    """Every row of ``<storage_root>/ledger`` (a local path or fsspec URI), only ``columns`` if given, or
    ``None`` if there is no ledger there yet; the same reader the engine uses."""
    from nbpro_pipeline.storage import Storage, read_ledger

    storage = Storage(storage_root, storage_options)
    if not storage.exists(storage.ledger_dir()):
        return None
    return read_ledger(storage, columns=columns)


def ledger_storage(storage_root: str, *, storage_options: dict[str, Any] | None = None) -> Any:
    """The ``Storage`` of ``storage_root`` (a local path or fsspec URI) if it holds a ledger, else ``None``;
    ``nbpro estimate`` then reads it a cell at a time (``estimate.storage_done_keys``)."""
    from nbpro_pipeline.storage import Storage

    storage = Storage(storage_root, storage_options)
    return storage if storage.exists(storage.ledger_dir()) else None


def _money(amount: Decimal) -> str:
    text = format(quantize_cost(amount).normalize(), "f")
    return text if amount else "0"


def render_estimates(estimates: Sequence[CellEstimate], prices: PriceTable, *, ledger_known: bool) -> str:
    """A text table of the estimates, a total per unit and the notes that say what is an estimate."""
    import pandas as pd

    from nbpro_pipeline.costs.reports import format_usd, to_text

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
    parts = [_total(provider, mine) for provider, mine in _by_provider(estimates).items()]
    if parts:
        out.append(f"\nTotal: {' + '.join(parts)} (≈ {format_usd(all_usd)} in all)")
    notes = ["Assumes every request succeeds once (failed tasks are refunded or not billed)."]
    notes.extend(_price_notes(estimates, prices))
    if not ledger_known:
        notes.append("Without --ledger-root, images generated earlier are not subtracted.")
    out.append("\n" + "\n".join(notes))
    return "\n".join(out)


def _by_provider(estimates: Sequence[CellEstimate]) -> dict[str, list[CellEstimate]]:
    out: dict[str, list[CellEstimate]] = {}
    for e in estimates:
        out.setdefault(e.provider, []).append(e)
    return out


def _total(provider: str, mine: list[CellEstimate]) -> str:
    from nbpro_pipeline.costs.reports import format_usd

    cost, name = sum((e.cost for e in mine), Decimal(0)), PROVIDERS.traits(provider).display_name
    mark = "*" if any(e.is_estimate for e in mine) else ""
    return f"{format_usd(cost)} {name}{mark}" if mine[0].cost_unit == "usd" else f"{_money(cost)} {name} credits"


def _price_notes(estimates: Sequence[CellEstimate], prices: PriceTable) -> list[str]:
    """Where each provider's figures come from, with the variables that change them."""
    notes = []
    for provider, mine in _by_provider(estimates).items():
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


def estimates_json(estimates: Sequence[CellEstimate], *, ledger_rows: int | None, accepted: int, rejected: int) -> dict:
    """The estimates as JSON-ready data, decimals as strings."""
    totals = {p: str(sum((e.cost for e in mine), Decimal(0))) for p, mine in _by_provider(estimates).items()}
    return {
        "cells": [e.to_json_dict() for e in estimates],
        "totals": totals,
        "total_estimated_usd": str(sum((e.estimated_usd for e in estimates), Decimal(0))),
        "accepted_rows": accepted,
        "rejected_entries": rejected,
        "ledger_rows": ledger_rows,
    }
