"""Report tables over the ledger: what was spent, where, on what, and how the two providers compare.

Money stays exact: sums are taken by Arrow over ``decimal128`` columns and every money column of a report
holds ``decimal.Decimal`` values (pandas ``object`` dtype), written back to Parquet as ``decimal128(38, 6)``
by ``write_report``. Only rates, shares and latencies are floats.

Which ledger rows count:
- Costs always sum **every** row: money spent on an attempt that failed, before a re-run succeeded, is real.
- ``credit_cost_report`` counts **events**: every row is one request outcome recorded on its day, so a
  failure on Monday and the success of its re-run on Tuesday both appear. Its ``failed_unresolved`` column
  counts only failed rows that are still the latest outcome of their (provider, resolution, fingerprint).
- ``provider_comparison`` counts attempts for the failure rate (failed / (succeeded + failed); skipped rows
  were never submitted) and distinct fingerprints for ``images``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nbpro_pipeline.costs._ledger import LedgerLike, as_ledger_table, quantize_cost
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.providers.registry import PROVIDERS

REPORT_COST_TYPE = pa.decimal128(38, 6)

_ZERO = Decimal(0)
_SUCCEEDED, _FAILED, _SKIPPED = (s.value for s in OutcomeStatus)
_RESOLUTION_ORDER = {r.value: i for i, r in enumerate(Resolution)}

CREDIT_COST_COLUMNS = [
    "provider",
    "resolution",
    "day",  # UTC date of recorded_at
    "source_uri",
    "cost_unit",
    "requests",  # ledger rows
    "succeeded",
    "failed",
    "skipped",
    "failed_unresolved",  # failed rows that are still the latest outcome of their fingerprint
    "credits_reserved",  # where the provider reports credits per task (else null)
    "credits_final",
    "final_cost",  # Decimal, cost_unit, every row
    "cost_lost_to_failures",  # Decimal: final_cost of failed rows (e.g. billed wrong-size images)
    "cost_per_success",  # Decimal: final_cost / succeeded (failures' cost included); null without successes
    "estimated_usd",  # Decimal: final_cost in USD through the price table
    "cost_is_estimate",  # the cost is read from the configured price table, not reported by the provider
    "expected_cost",  # Decimal: succeeded x table price
    "cost_delta",  # Decimal: final_cost - expected_cost (positive: paid for more than the images kept)
    "stated_vs_list",  # Decimal: what the provider stated for its successes minus the table price of them
    "cost_anomalies",  # rows whose provider-stated amount was not believed (booked at the list price)
    "failures_by_reason",  # JSON object {error_code: failed rows}
    "skips_by_reason",  # JSON object {error_code: skipped rows}
]

COMPARISON_COLUMNS = [
    "provider",
    "resolution",
    "cost_unit",
    "requests",
    "succeeded",
    "failed",
    "skipped",
    "images",  # distinct fingerprints with a succeeded row
    "failure_rate",  # failed / (succeeded + failed), attempts
    "size_mismatches",  # rows with error_code size_mismatch
    "final_cost",  # Decimal, every row
    "cost_per_image",  # Decimal: final_cost / images
    "estimated_usd",
    "cost_per_image_usd",
    "price_per_image",  # the price table's figure, for comparison with cost_per_image
    "cost_is_estimate",
    "latency_p50_s",  # of succeeded rows, linear interpolation
    "latency_p95_s",
    "common_prompts",  # (prompt_id, prompt_sha256) that succeeded on every provider at this resolution
    "common_cost",  # Decimal: every row of those prompts in this cell (their failed attempts included)
    "common_cost_usd",
    "common_cost_per_image_usd",
]

FAILURE_REASON_COLUMNS = ["provider", "resolution", "day", "source_uri", "status", "error_code", "rows", "cost"]


# -- helpers -------------------------------------------------------------------------------------------
def _status_flag(table: pa.Table, status: str) -> pa.ChunkedArray:
    return pc.cast(pc.fill_null(pc.equal(table["status"], status), False), pa.int64())


def latest_mask(ledger: LedgerLike) -> pa.ChunkedArray | pa.Array:
    """True for the latest row (by ``recorded_at``; ties: later in the table) of each
    (provider, resolution, fingerprint)."""
    table = as_ledger_table(ledger, ["provider", "resolution", "fingerprint", "recorded_at"])
    n = table.num_rows
    if n == 0:
        return pa.array([], pa.bool_())
    recorded = table["recorded_at"]
    recorded = pc.fill_null(recorded, pa.scalar(0, pa.int64()).cast(recorded.type))  # unknown time: oldest
    order = pc.sort_indices(pa.table({"t": recorded}), sort_keys=[("t", "ascending")])  # stable
    rank = np.empty(n, dtype=np.int64)
    rank[order.to_numpy()] = np.arange(n)
    keyed = pa.table(
        {"p": table["provider"], "r": table["resolution"], "f": table["fingerprint"], "rank": pa.array(rank)}
    )
    latest = keyed.group_by(["p", "r", "f"], use_threads=False).aggregate([("rank", "max")])["rank_max"]
    return pc.is_in(pa.array(rank), value_set=latest.combine_chunks())


def _usd(prices: PriceTable, provider: str, amount: Decimal | None) -> Decimal | None:
    return None if amount is None else quantize_cost(prices.to_usd(provider, amount))


def _div(amount: Decimal | None, count: int) -> Decimal | None:
    return None if amount is None or not count else quantize_cost(amount / count)


def _dec(value: Any) -> Decimal:
    return _ZERO if value is None else Decimal(value)


def _sort_cells(df: pd.DataFrame, extra: Sequence[str] = (), *, resolution_first: bool = False) -> pd.DataFrame:
    if df.empty:
        return df.reset_index(drop=True)
    keys = pd.DataFrame(
        {
            "_p": df["provider"].map(PROVIDERS.order),
            "_r": df["resolution"].map(_RESOLUTION_ORDER).fillna(99),
        },
        index=df.index,
    )
    order = ["_r", "_p"] if resolution_first else ["_p", "_r"]
    for name in extra:
        keys[name] = df[name]
    by = list(extra[:1]) + order + list(extra[1:]) if extra else order
    return df.loc[keys.sort_values(by, kind="stable").index].reset_index(drop=True)


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})


def failed_latest(table: pa.Table) -> pa.Array:
    """True for failed rows that are still the latest row of their (provider, resolution, fingerprint).

    Same answer as ``failed & latest_mask(table)``, but the ranking runs only over the rows of
    fingerprints that ever failed (a few percent), not over a million rows.
    """
    n = table.num_rows
    failed = pc.fill_null(pc.equal(table["status"], _FAILED), False)
    out = np.zeros(n, dtype=bool)
    if n == 0 or not pc.any(failed).as_py():
        return pa.array(out)
    suspects = pc.unique(table.filter(failed)["fingerprint"])
    mask = pc.fill_null(pc.is_in(table["fingerprint"], value_set=suspects), False)
    candidates = np.flatnonzero(mask.to_numpy())
    subset = table.filter(mask)  # chunk by chunk: ``take`` would first concatenate every chunk of the table
    latest = latest_mask(subset).to_numpy(zero_copy_only=False)
    out[candidates] = latest & pc.fill_null(pc.equal(subset["status"], _FAILED), False).to_numpy(zero_copy_only=False)
    return pa.array(out)


CREDIT_LEDGER_COLUMNS = [
    "provider",
    "resolution",
    "fingerprint",
    "source_uri",
    "status",
    "error_code",
    "credits_reserved",
    "credits_final",
    "final_cost",
    "cost_is_estimate",
    "recorded_at",
    "stated_cost",
    "list_price",
    "cost_anomaly",
]
# what the two reports and the totals read of the ledger: pass it as ``read_ledger(columns=...)``
REPORT_LEDGER_COLUMNS = list(dict.fromkeys([*CREDIT_LEDGER_COLUMNS, "prompt_id", "prompt_sha256", "latency_s"]))


# -- credit_cost_report -------------------------------------------------------------------------------
def credit_cost_report(ledger: LedgerLike, prices: PriceTable) -> pd.DataFrame:
    """One row per (provider, resolution, UTC day of ``recorded_at``, source_uri); columns in
    ``CREDIT_COST_COLUMNS``. Counts are events (ledger rows); see the module docstring."""
    from nbpro_pipeline.costs.cost_report import CostAccumulator, cost_report_frame

    accumulator = CostAccumulator()
    accumulator.add(as_ledger_table(ledger, CREDIT_LEDGER_COLUMNS))
    return cost_report_frame(*accumulator.groups(), prices)


class _CellPrices:
    """Per (provider, resolution): known to the price table, its price per image, estimate or not (once)."""

    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices
        self._cache: dict[tuple[str, str], tuple[bool, Decimal | None, bool]] = {}

    def __call__(self, provider: str, resolution: str) -> tuple[bool, Decimal | None, bool]:
        key = (provider, resolution)
        if key not in self._cache:
            known = self.prices.knows(provider) and resolution in _RESOLUTION_ORDER
            price = self.prices.per_image(provider, resolution) if known else None
            self._cache[key] = (known, price, known and self.prices.is_estimate(provider))
        return self._cache[key]


def failure_reasons(ledger: LedgerLike) -> pd.DataFrame:
    """Long form of failures by reason: one row per (provider, resolution, day, source_uri, status,
    error_code) over failed and skipped rows, with the row count and their exact cost."""
    table = as_ledger_table(ledger)
    bad = table.filter(pc.fill_null(pc.is_in(table["status"], value_set=pa.array([_FAILED, _SKIPPED])), False))
    if bad.num_rows == 0:
        return _empty(FAILURE_REASON_COLUMNS)
    work = pa.table(
        {
            "provider": bad["provider"],
            "resolution": bad["resolution"],
            "day": pc.cast(bad["recorded_at"], pa.date32()),
            "source_uri": bad["source_uri"],
            "status": bad["status"],
            "error_code": pc.fill_null(bad["error_code"], "unknown"),
            "cost": pc.fill_null(bad["final_cost"], pa.scalar(_ZERO, bad.schema.field("final_cost").type)),
        }
    )
    keys = FAILURE_REASON_COLUMNS[:6]
    agg = work.group_by(keys, use_threads=False).aggregate([("status", "count"), ("cost", "sum")])
    df = pd.DataFrame(
        [{**{k: g[k] for k in keys}, "rows": g["status_count"], "cost": _dec(g["cost_sum"])} for g in agg.to_pylist()],
        columns=FAILURE_REASON_COLUMNS,
    )
    return _sort_cells(df, extra=["day", "source_uri", "status", "error_code"])


# -- provider_comparison ------------------------------------------------------------------------------
COMPARISON_LEDGER_COLUMNS = [
    "prompt_id",
    "prompt_sha256",
    "provider",
    "resolution",
    "fingerprint",
    "status",
    "error_code",
    "final_cost",
    "cost_is_estimate",
    "latency_s",
]


def provider_comparison(ledger: LedgerLike, prices: PriceTable) -> pd.DataFrame:
    """One row per (provider, resolution), resolutions grouped together; columns in ``COMPARISON_COLUMNS``.

    ``common_*`` columns restrict both sides to the prompts (same ``prompt_id`` and ``prompt_sha256``)
    that succeeded on every provider at that resolution, so the costs compare like with like. Computed
    by Arrow over the columns, a cell at a time (``costs.comparison``); sums stay exact decimals.
    """
    from nbpro_pipeline.costs.comparison import CellComparison, comparison_rows

    table = as_ledger_table(ledger, COMPARISON_LEDGER_COLUMNS)
    if table.num_rows == 0:
        return _empty(COMPARISON_COLUMNS)
    cells = []
    for pair in table.group_by(["provider", "resolution"], use_threads=False).aggregate([]).to_pylist():
        cell = CellComparison(pair["provider"], pair["resolution"])
        cell.add(table.filter(_is_cell(table, pair["provider"], pair["resolution"])))
        cells.append(cell)
    rows = comparison_rows(cells, prices)
    return _sort_cells(pd.DataFrame(rows, columns=COMPARISON_COLUMNS), resolution_first=True)


def _is_cell(table: pa.Table, provider: str | None, resolution: str | None) -> pa.ChunkedArray:
    def same(column: str, value: str | None) -> pa.ChunkedArray:
        return pc.is_null(table[column]) if value is None else pc.fill_null(pc.equal(table[column], value), False)

    return pc.and_(same("provider", provider), same("resolution", resolution))


# -- over a storage root, a cell (or a resolution) at a time ----------------------------------------
def _providers_in(storage: Any) -> list[str]:
    """The providers the ledger holds rows of, in the registry's order (others after, by name)."""
    from nbpro_pipeline.storage.compaction import ledger_providers

    return sorted(ledger_providers(storage), key=lambda p: (PROVIDERS.order(p), p))


def credit_cost_report_for(storage: Any, prices: PriceTable) -> pd.DataFrame:
    """``credit_cost_report`` of every row under ``storage`` (a ``Storage``), read a cell at a time in
    batches (``costs.scan``) and summed as it is read.

    Every group of the report lies within one cell, so the result equals the report of the whole
    ledger, while memory holds a batch of rows, the groups' sums and five narrow columns of one cell
    (for ``failed_unresolved``), never the year's rows.
    """
    from nbpro_pipeline.costs.cost_report import CostAccumulator, cost_report_frame
    from nbpro_pipeline.costs.scan import cell_batches

    groups, reasons = [], []
    for provider in _providers_in(storage):
        for resolution in Resolution:
            accumulator = CostAccumulator()
            for batch in cell_batches(storage, provider, resolution, CREDIT_LEDGER_COLUMNS):
                accumulator.add(batch)
            if accumulator.rows:
                cell_groups, cell_reasons = accumulator.groups()
                groups.append(cell_groups)
                reasons.append(cell_reasons)
    if not groups:
        return _empty(CREDIT_COST_COLUMNS)
    return cost_report_frame(pa.concat_tables(groups), pa.concat_tables(reasons), prices)


def provider_comparison_for(storage: Any, prices: PriceTable) -> pd.DataFrame:
    """``provider_comparison`` of every row under ``storage``, each cell read in batches
    (``costs.scan``) into its ``CellComparison``, a resolution at a time: memory holds a batch and the
    narrow columns of one resolution's cells."""
    from nbpro_pipeline.costs.comparison import CellComparison, comparison_rows
    from nbpro_pipeline.costs.scan import cell_batches

    rows: list[dict[str, Any]] = []
    for resolution in Resolution:
        cells = []
        for provider in _providers_in(storage):
            cell = CellComparison(provider, resolution.value)
            for batch in cell_batches(storage, provider, resolution, COMPARISON_LEDGER_COLUMNS):
                cell.add(batch)
            if cell.rows:
                cells.append(cell)
        rows.extend(comparison_rows(cells, prices))
    if not rows:
        return _empty(COMPARISON_COLUMNS)
    return _sort_cells(pd.DataFrame(rows, columns=COMPARISON_COLUMNS), resolution_first=True)


def totals_for(storage: Any) -> dict[str, Decimal]:
    """``totals_by_provider`` of every row under ``storage``, summed batch by batch from two columns."""
    from nbpro_pipeline.costs.scan import ledger_batches

    totals: dict[str, Decimal] = {}
    for batch in ledger_batches(storage, ["provider", "final_cost"]):
        for provider, amount in totals_by_provider(batch).items():
            totals[provider] = totals.get(provider, _ZERO) + amount
    return dict(sorted(totals.items(), key=lambda kv: (PROVIDERS.order(kv[0]), kv[0])))


def totals_of_report(df: pd.DataFrame) -> dict[str, Decimal]:
    """``totals_by_provider`` from a ``credit_cost_report`` frame (its ``final_cost`` sums every row of
    its groups), so that an asset that has the report need not read the ledger again."""
    totals: dict[str, Decimal] = {}
    for provider, amount in zip(df["provider"], df["final_cost"], strict=True):
        totals[provider] = totals.get(provider, _ZERO) + _dec(None if _is_missing(amount) else amount)
    return dict(sorted(totals.items(), key=lambda kv: (PROVIDERS.order(kv[0]), kv[0])))


# -- totals -------------------------------------------------------------------------------------------
def totals_by_provider(ledger: LedgerLike) -> dict[str, Decimal]:
    """Exact sum of ``final_cost`` of every row, per provider present in the ledger (in its unit), to
    reconcile with the provider's own billing."""
    table = as_ledger_table(ledger, ["provider", "final_cost"])
    if table.num_rows == 0:
        return {}
    agg = table.group_by("provider", use_threads=False).aggregate([("final_cost", "sum")])
    totals = {row["provider"]: _dec(row["final_cost_sum"]) for row in agg.to_pylist()}
    return dict(sorted(totals.items(), key=lambda kv: (PROVIDERS.order(kv[0]), kv[0])))


# -- rendering ----------------------------------------------------------------------------------------
def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and np.isnan(value)


def format_value(value: Any) -> str:
    """A cell as short text: decimals without trailing zeros, floats to 3 places, booleans yes/no."""
    if _is_missing(value):
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
    values = [v for v in series if not _is_missing(v)]
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
        totals[key] += _dec(None if _is_missing(row[value]) else row[value])
        if "final_cost" in row and not _is_missing(row["final_cost"]):
            native[key] += _dec(row["final_cost"])
        if not _is_missing(row.get("cost_unit")):
            units[key] = str(row["cost_unit"])
        estimate[key] |= bool(row.get("cost_is_estimate")) and not _is_missing(row.get("cost_is_estimate"))
    keys = sorted(totals, key=lambda k: (PROVIDERS.order(k[0]), _RESOLUTION_ORDER.get(k[1], 99), k))
    top = max(totals.values(), default=_ZERO)
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


# -- writing ------------------------------------------------------------------------------------------
def report_to_arrow(df: pd.DataFrame) -> pa.Table:
    """``df`` as an Arrow table: Decimal columns as decimal128(38, 6), date columns as date32."""
    arrays, names = [], []
    for name in df.columns:
        series = df[name]
        values = [None if _is_missing(v) else v for v in series.tolist()]
        present = [v for v in values if v is not None]
        if series.dtype == object and present and all(isinstance(v, Decimal) for v in present):
            array = pa.array([None if v is None else quantize_cost(v) for v in values], REPORT_COST_TYPE)
        elif series.dtype == object and present and all(type(v) is date for v in present):
            array = pa.array(values, pa.date32())
        elif series.dtype == object and not present and name in _DECIMAL_COLUMNS:
            array = pa.array(values, REPORT_COST_TYPE)
        else:
            array = pa.Array.from_pandas(series)
            if pa.types.is_large_string(array.type):
                array = array.cast(pa.string())
        arrays.append(array)
        names.append(str(name))
    return pa.Table.from_arrays(arrays, names=names)


_DECIMAL_COLUMNS = {
    "final_cost",
    "cost_lost_to_failures",
    "cost_per_success",
    "estimated_usd",
    "expected_cost",
    "cost_delta",
    "cost_per_image",
    "cost_per_image_usd",
    "price_per_image",
    "common_cost",
    "common_cost_usd",
    "common_cost_per_image_usd",
    "cost",
}


def write_report(df: pd.DataFrame, uri_or_path: str | os.PathLike[str], *, storage_options: dict | None = None) -> str:
    """Write ``df`` as one Parquet file (money as decimal128) to a local path or an fsspec URI
    (``s3://…``, ``gs://…``, ``memory://…``); returns where it went.

    Atomic everywhere (through ``Storage.open_atomic``): a report that fails half-way, locally or on an
    object store, leaves the previous report in place rather than a truncated Parquet file.
    """
    from nbpro_pipeline.storage.filesystem import Storage

    table = report_to_arrow(df)
    target = os.fspath(uri_or_path)
    parent, _, name = target.rstrip("/").rpartition("/")
    if not name:
        raise ValueError(f"{target!r} names no file; pass a path or URI ending in a file name")
    storage = Storage(parent or ".", storage_options)
    path = f"{storage.root.rstrip('/')}/{name}"
    with storage.open_atomic(path) as fh:
        pq.write_table(table, fh)
    return storage.uri(path) if storage.is_local else target
