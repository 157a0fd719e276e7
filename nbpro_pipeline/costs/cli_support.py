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
from nbpro_pipeline.models.common import Provider


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


def estimates_json(estimates: Sequence[CellEstimate], *, ledger_rows: int | None, accepted: int, rejected: int) -> dict:
    """The estimates as JSON-ready data, decimals as strings."""
    totals: dict[str, str] = {}
    for provider in Provider:
        mine = [e for e in estimates if e.provider is provider]
        if mine:
            totals[provider.value] = str(sum((e.cost for e in mine), Decimal(0)))
    return {
        "cells": [e.to_json_dict() for e in estimates],
        "totals": totals,
        "total_estimated_usd": str(sum((e.estimated_usd for e in estimates), Decimal(0))),
        "accepted_rows": accepted,
        "rejected_entries": rejected,
        "ledger_rows": ledger_rows,
    }
