"""Report summaries a person reads in the asset's metadata panel: at most 8 columns, units in the
headers, a totals row; and the full report as typed columns for ``MetadataValue.table``.

The report frames themselves (``costs.reports``) keep every column and exact decimals; this module only
decides what to show and how to round it.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.providers.registry import PROVIDERS

_RESOLUTIONS = [r.value for r in Resolution]
ColumnType = Literal["string", "int", "float", "bool"]
Scalar = str | int | float | bool | None


def _d(value) -> Decimal:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return Decimal(0)
    return Decimal(value) if not isinstance(value, float) else Decimal(str(value))


def _usd(amount: Decimal, places: int = 2) -> str:
    return f"${amount:,.{places}f}"


def _native(amount: Decimal, unit: str) -> str:
    return f"{amount.normalize():f} cr" if unit == "credits" else _usd(amount)


def _table(header: list[str], align: str, rows: list[list[str]]) -> str:
    return md.table(header, rows, align)


def _cells(report: pd.DataFrame):
    groups = report.groupby(["provider", "resolution"], sort=False)

    def order(cell: tuple[str, str]) -> tuple[int, int]:
        return PROVIDERS.order(cell[0]), _RESOLUTIONS.index(cell[1]) if cell[1] in _RESOLUTIONS else 99

    return sorted(groups, key=lambda kv: order(kv[0]))


# Narrow on purpose: the metadata panel gives a value about 420 px at a 1440 px window.
COST_HEADER = ["cell", "images", "failed", "cost", "USD", "lost USD"]
COMPARISON_HEADER = ["cell", "images", "USD/img", "failed %", "p50 s", "p95 s", "wrong size"]
USD_NOTE = "\n\ncr: credits. USD: estimated.\n\nlost: spent on failed attempts."


def cost_summary(report: pd.DataFrame) -> str:
    """``credit_cost_report`` per cell (days and sources summed), with a totals row in USD."""
    if report.empty:
        return "_no ledger rows yet_"
    rows, images_all, failed_all, usd_all, lost_all = [], 0, 0, Decimal(0), Decimal(0)
    for (provider, resolution), g in _cells(report):
        images, failed = int(g["succeeded"].sum()), int(g["failed"].sum())
        native = sum((_d(v) for v in g["final_cost"]), Decimal(0))
        usd = sum((_d(v) for v in g["estimated_usd"]), Decimal(0))
        rate = usd / native if native else Decimal(0)
        lost = sum((_d(v) for v in g["cost_lost_to_failures"]), Decimal(0)) * rate
        unit = str(g["cost_unit"].iloc[0])
        cell = md.text(f"{provider} {resolution}")
        rows.append([cell, str(images), str(failed), _native(native, unit), _usd(usd), _usd(lost)])
        images_all, failed_all = images_all + images, failed_all + failed
        usd_all, lost_all = usd_all + usd, lost_all + lost
    rows.append(["**total**", f"**{images_all}**", f"**{failed_all}**", "", f"**{_usd(usd_all)}**", _usd(lost_all)])
    return _table(COST_HEADER, "lrrrrr", rows) + USD_NOTE


def comparison_summary(report: pd.DataFrame) -> str:
    """``provider_comparison``: the answer first (USD per image), then failure rate and latency."""
    if report.empty:
        return "_no ledger rows yet_"
    rows, images_all, usd_all, ok_all, failed_all, mism_all = [], 0, Decimal(0), 0, 0, 0
    for r in report.to_dict("records"):
        images, failed, ok = int(r["images"]), int(r["failed"]), int(r["succeeded"])
        rate = f"{100 * failed / (ok + failed):.0f}%" if ok + failed else ""
        per = _usd(_d(r["cost_per_image_usd"]), 3) if images else ""
        mism = int(r["size_mismatches"])
        p50, p95 = _fmt_s(r["latency_p50_s"]), _fmt_s(r["latency_p95_s"])
        rows.append([md.text(f"{r['provider']} {r['resolution']}"), str(images), per, rate, p50, p95, str(mism)])
        images_all, usd_all = images_all + images, usd_all + _d(r["estimated_usd"])
        ok_all, failed_all, mism_all = ok_all + ok, failed_all + failed, mism_all + mism
    rate_all = f"{100 * failed_all / (ok_all + failed_all):.0f}%" if ok_all + failed_all else ""
    per_all = f"**{_usd(usd_all / images_all, 3)}**" if images_all else ""
    rows.append(["**total**", f"**{images_all}**", per_all, rate_all, "", "", str(mism_all)])
    return _table(COMPARISON_HEADER, "lrrrrrr", rows) + "\n\nUSD/img counts failed attempts too." + USD_NOTE


def _fmt_s(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{float(value):.1f}"


# -- the full report as typed columns -------------------------------------------------------------------
class ColumnSpec(BaseModel):
    name: str
    type: ColumnType
    description: str | None = None


class TableSpec(BaseModel):
    """A report as rows of scalars with a schema: what ``MetadataValue.table`` takes."""

    columns: list[ColumnSpec]
    records: list[dict[str, Scalar]]


def _column_type(series: pd.Series) -> ColumnType:
    present = [v for v in series if v is not None and v is not pd.NA and not (isinstance(v, float) and np.isnan(v))]
    if pd.api.types.is_bool_dtype(series) or (present and all(isinstance(v, bool | np.bool_) for v in present)):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series) or (present and all(isinstance(v, Decimal | float) for v in present)):
        return "float"
    return "string"


def _scalar(value, kind: ColumnType, name: str) -> Scalar:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        places = 2 if name.endswith("_s") or name.endswith("rate") else 4
        return round(float(value), places)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and value.startswith("{"):
        counts = json.loads(value)
        return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return str(value)


def table_spec(report: pd.DataFrame, descriptions: dict[str, str] | None = None) -> TableSpec:
    """Every column, typed; money rounded to 4 places, seconds and rates to 2, JSON counts as text."""
    descriptions = descriptions or {}
    kinds = {str(c): _column_type(report[c]) for c in report.columns}
    records = [
        {name: _scalar(value, kinds[name], name) for name, value in zip(kinds, row, strict=True)}
        for row in report.itertuples(index=False, name=None)
    ]
    columns = [ColumnSpec(name=n, type=t, description=descriptions.get(n)) for n, t in kinds.items()]
    return TableSpec(columns=columns, records=records)
