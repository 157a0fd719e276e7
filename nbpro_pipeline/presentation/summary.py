"""Report summaries a person reads in the asset's metadata panel: at most 8 columns, one unit per column,
units in the headers, a totals row. The full report is its Parquet file, described by its column schema.

The report frames themselves (``costs.reports``) keep every column and exact decimals; this module only
decides what to show and how to round it.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.providers.registry import PROVIDERS

_RESOLUTIONS = [r.value for r in Resolution]


def _d(value) -> Decimal:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return Decimal(0)
    return Decimal(value) if not isinstance(value, float) else Decimal(str(value))


def _usd(amount: Decimal, places: int = 2) -> str:
    return f"${amount:,.{places}f}"


def _native(amount: Decimal) -> str:
    return f"{amount.normalize():f}"


def _table(header: list[str], align: str, rows: list[list[str]]) -> str:
    return md.table(header, rows, align)


def _cells(report: pd.DataFrame):
    groups = report.groupby(["provider", "resolution"], sort=False)

    def order(cell: tuple[str, str]) -> tuple[int, int]:
        return PROVIDERS.order(cell[0]), _RESOLUTIONS.index(cell[1]) if cell[1] in _RESOLUTIONS else 99

    return sorted(groups, key=lambda kv: order(kv[0]))


# Narrow on purpose: the metadata panel gives a value about 420 px at a 1440 px window. One column per unit:
# credits and dollars never share one.
COST_HEADER = ["cell", "images", "failed", "USD", "USD/img", "lost USD"]
COMPARISON_HEADER = ["cell", "images", "USD/img", "USD/usable", "failed %", "p50/p95 s", "wrong size"]
USD_NOTE = (
    "\n\nUSD: estimate (credits at the configured rate; the price table where the provider states no cost). "
    "USD/img: every cost of the cell over its images, failed attempts included (USD/usable: over the images not "
    "judged blank or duplicates). lost: spent on failed attempts."
)


class _CostRow(BaseModel):
    cell: str
    unit: str
    images: int
    failed: int
    native: Decimal
    usd: Decimal
    lost_usd: Decimal

    def cells(self, units: list[str]) -> list[str]:
        native = [_native(self.native) if u == self.unit else "" for u in units]
        per = _usd(self.usd / self.images, 3) if self.images else ""
        return [
            md.text(self.cell),
            str(self.images),
            str(self.failed),
            *native,
            _usd(self.usd),
            per,
            _usd(self.lost_usd),
        ]


def _cost_rows(report: pd.DataFrame) -> list[_CostRow]:
    rows = []
    for (provider, resolution), g in _cells(report):
        native = sum((_d(v) for v in g["final_cost"]), Decimal(0))
        usd = sum((_d(v) for v in g["estimated_usd"]), Decimal(0))
        rate = usd / native if native else Decimal(0)
        rows.append(
            _CostRow(
                cell=f"{provider} {resolution}", unit=str(g["cost_unit"].iloc[0]), images=int(g["succeeded"].sum()),
                failed=int(g["failed"].sum()), native=native, usd=usd,
                lost_usd=sum((_d(v) for v in g["cost_lost_to_failures"]), Decimal(0)) * rate,
            )
        )  # fmt: skip
    return rows


def cost_summary(report: pd.DataFrame) -> str:
    """``credit_cost_report`` per cell (days and sources summed): a column per non-USD unit, USD, USD per
    image, with a totals row."""
    if report.empty:
        return "_no ledger rows yet_"
    rows = _cost_rows(report)
    units = sorted({r.unit for r in rows if r.unit != "usd"})
    header = [*COST_HEADER[:3], *units, *COST_HEADER[3:]]
    body = [r.cells(units) for r in rows]
    images, usd = sum(r.images for r in rows), sum((r.usd for r in rows), Decimal(0))
    natives = [f"**{_native(sum((r.native for r in rows if r.unit == u), Decimal(0)))}**" for u in units]
    per = f"**{_usd(usd / images, 3)}**" if images else ""
    lost = _usd(sum((r.lost_usd for r in rows), Decimal(0)))
    body.append(
        ["**total**", f"**{images}**", f"**{sum(r.failed for r in rows)}**", *natives, f"**{_usd(usd)}**", per, lost]
    )
    return _table(header, "l" + "r" * (len(header) - 1), body) + USD_NOTE


def comparison_summary(report: pd.DataFrame) -> str:
    """``provider_comparison``: the answer first (USD per image), then failure rate and latency."""
    if report.empty:
        return "_no ledger rows yet_"
    rows, images_all, usd_all, ok_all, failed_all, mism_all = [], 0, Decimal(0), 0, 0, 0
    for r in report.to_dict("records"):
        images, failed, ok = int(r["images"]), int(r["failed"]), int(r["succeeded"])
        rate = f"{100 * failed / (ok + failed):.0f}%" if ok + failed else ""
        per = _usd(_d(r["cost_per_image_usd"]), 3) if images else ""
        per_usable = _usd(_d(r["cost_per_usable_image_usd"]), 3) if r["usable_images"] else ""
        mism = int(r["size_mismatches"])
        p50, p95 = _fmt_s(r["latency_p50_s"]), _fmt_s(r["latency_p95_s"])
        cell = md.text(f"{r['provider']} {r['resolution']}")
        rows.append([cell, str(images), per, per_usable, rate, f"{p50}/{p95}" if p50 else "", str(mism)])
        images_all, usd_all = images_all + images, usd_all + _d(r["estimated_usd"])
        ok_all, failed_all, mism_all = ok_all + ok, failed_all + failed, mism_all + mism
    rate_all = f"{100 * failed_all / (ok_all + failed_all):.0f}%" if ok_all + failed_all else ""
    per_all = f"**{_usd(usd_all / images_all, 3)}**" if images_all else ""
    rows.append(["**total**", f"**{images_all}**", per_all, "", rate_all, "", str(mism_all)])
    return _table(COMPARISON_HEADER, "lrrrrrr", rows) + USD_NOTE


def _fmt_s(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{float(value):.1f}"
