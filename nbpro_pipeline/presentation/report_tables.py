"""Report frames as text: markdown tables for the UI, aligned tables for a terminal, a unicode bar chart
of cost per cell, and the short forms of values they share (``format_value``, ``format_usd``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from nbpro_pipeline.costs._ledger import quantize_cost
from nbpro_pipeline.costs.money import ZERO, as_decimal, is_missing
from nbpro_pipeline.costs.report_cells import cell_sort_key
from nbpro_pipeline.presentation import markdown as md


def format_value(value: Any) -> str:
    """A cell as short text: decimals without trailing zeros, floats to 3 places, booleans yes/no."""
    if is_missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f") if value else "0"
        return text
    if isinstance(value, float | np.floating):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3f}".rstrip("0").rstrip(".") or "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def format_usd(amount: Decimal) -> str:
    """``$1.20``, ``$0.1344``: cents always shown, further places only when they are not zero."""
    amount = quantize_cost(Decimal(amount)).normalize()
    if amount.as_tuple().exponent > -2:
        amount = amount.quantize(Decimal("0.01"))
    return f"${amount:f}"


def _is_numeric(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series):
        return False
    if pd.api.types.is_numeric_dtype(series):
        return True
    values = [v for v in series if not is_missing(v)]
    return bool(values) and all(
        isinstance(v, Decimal | int | float | np.integer | np.floating) and not isinstance(v, bool) for v in values
    )


def to_markdown(df: pd.DataFrame, max_rows: int = 50, *, columns: Sequence[str] | None = None) -> str:
    """``df`` as a GitHub-flavoured markdown table (numbers right-aligned), at most ``max_rows`` rows.

    Needs no ``tabulate``. Cells are escaped so a ``|`` or newline in a value cannot break the table.
    """
    return _render(df, max_rows, columns, markdown=True)


def to_text(df: pd.DataFrame, max_rows: int = 50, *, columns: Sequence[str] | None = None) -> str:
    """``df`` as an aligned plain-text table for a terminal (nothing escaped), at most ``max_rows`` rows."""
    return _render(df, max_rows, columns, markdown=False)


def _render(df: pd.DataFrame, max_rows: int, columns: Sequence[str] | None, *, markdown: bool) -> str:
    if columns is not None:
        df = df[list(columns)]
    if len(df.columns) == 0:
        return "_no columns_" if markdown else "(no columns)"
    if df.empty:
        return "_no rows_" if markdown else "(no rows)"
    shown = df.head(max_rows)

    def esc(value: Any) -> str:  # text cells may hold table values; numbers and dates are ours
        text = format_value(value)
        if not markdown:
            return text.replace("\r", " ").replace("\n", " ")
        return md.text(text) if isinstance(value, str) else text

    header = [str(c) for c in shown.columns]  # the report's own column names
    body = [[esc(v) for v in row] for row in shown.itertuples(index=False, name=None)]
    right = [_is_numeric(shown[c]) for c in shown.columns]
    widths = [max(3, len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    left_edge, sep, right_edge = ("| ", " | ", " |") if markdown else ("", "  ", "")

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        text = left_edge + sep.join(padded) + right_edge
        return text if markdown else text.rstrip()

    if markdown:
        rule = [("-" * (w - 1) + ":") if r else "-" * w for w, r in zip(widths, right, strict=True)]
    else:
        rule = ["-" * w for w in widths]
    out = [line(header), (left_edge + sep.join(rule) + right_edge), *(line(r) for r in body)]
    if len(df) > max_rows:
        more = len(df) - max_rows
        out.append(f"\n_{more} more rows not shown_" if markdown else f"({more} more rows not shown)")
    return "\n".join(out)


_EIGHTHS = " ▏▎▍▌▋▊▉"


def _bar(value: Decimal, top: Decimal, width: int) -> str:
    if top <= 0 or value <= 0:
        return ""
    eighths = int((value / top * width * 8).to_integral_value())
    eighths = max(eighths, 1)  # anything spent shows
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def cost_chart_markdown(
    df: pd.DataFrame, *, value: str = "estimated_usd", width: int = 30, title: str | None = None
) -> str:
    """A unicode bar chart (markdown code block) of ``value`` summed per provider x resolution.

    Takes a ``credit_cost_report`` or ``provider_comparison`` frame. The default value is USD, the only
    unit both providers share; the native amount (e.g. credits) is shown beside each bar, and ``*`` marks
    costs read from the price table rather than reported by the provider.
    """
    if df.empty or value not in df.columns:
        return "_no costs recorded yet_"
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    native: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    units: dict[tuple[str, str], str] = {}
    estimate: dict[tuple[str, str], bool] = defaultdict(bool)
    for row in df.to_dict("records"):
        key = (str(row["provider"]), str(row["resolution"]))
        totals[key] += as_decimal(None if is_missing(row[value]) else row[value])
        if "final_cost" in row and not is_missing(row["final_cost"]):
            native[key] += as_decimal(row["final_cost"])
        if not is_missing(row.get("cost_unit")):
            units[key] = str(row["cost_unit"])
        estimate[key] |= bool(row.get("cost_is_estimate")) and not is_missing(row.get("cost_is_estimate"))
    keys = sorted(totals, key=lambda k: cell_sort_key(*k))
    top = max(totals.values(), default=ZERO)
    usd = value.endswith("usd")
    labels = {k: f"{k[0]}|{k[1]}" for k in keys}
    label_width = max(len(v) for v in labels.values())
    lines = []
    for key in keys:
        text = format_usd(totals[key]) if usd else format_value(totals[key])
        unit = units.get(key)
        if usd and unit and unit != "usd" and key in native:
            text += f" ({format_value(native[key])} {unit})"
        text += " *" if estimate[key] else ""
        lines.append(f"{labels[key].ljust(label_width)} {_bar(totals[key], top, width).ljust(width)} {text}")
    heading = f"**{title}**\n\n" if title else ""
    notes = []
    if any(estimate.values()):
        notes.append("`*` estimate: the provider publishes no price; cost from the configured price table.")
    if usd and any(u == "credits" for u in units.values()):
        notes.append("USD for credits uses the configured USD per credit (an assumption).")
    footer = ("\n\n" + " ".join(notes)) if notes else ""
    return heading + md.code_block(lines) + footer
