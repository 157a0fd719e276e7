"""``credit_cost_report`` computed as the rows are read: partial sums per batch, merged, then one frame.

Every column of the report is a sum, a count or an "any" over the rows of its group, so a batch can be
reduced to its groups' partial sums and the batches merged by summing again; Arrow sums ``decimal128``
exactly, so the totals are the same whatever the batching. The one column that is not a plain sum,
``failed_unresolved`` (failed rows that are still the latest of their fingerprint), needs every row of
a fingerprint at once: the accumulator keeps five narrow columns of its rows for it (a cell's, when the
report is read a cell at a time), not the eleven the sums read.

The frame is then built column by column from the merged groups (no dict per row), money as
``Decimal``. ``reports.credit_cost_report`` and ``reports.credit_cost_report_for`` both go through here,
so the whole-table report and the cell-by-cell one cannot drift apart.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.costs._ledger import quantize_cost
from nbpro_pipeline.costs.latest_rows import FAILED, SKIPPED, SUCCEEDED, failed_latest, status_flag, usable_flag
from nbpro_pipeline.costs.money import ZERO, per_item
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.costs.report_cells import RESOLUTION_ORDER, CellPrices, cost_unit, usd
from nbpro_pipeline.costs.report_columns import CREDIT_COST_COLUMNS, REPORT_COST_TYPE, empty_report
from nbpro_pipeline.models.ledger import COST_TYPE
from nbpro_pipeline.providers.registry import PROVIDERS

KEYS = ["provider", "resolution", "day", "source_uri"]
_INT_SUMS = [
    "one", "succeeded", "failed", "skipped", "failed_unresolved", "credits_reserved", "credits_final", "anomalies",
    "usable",
]  # fmt: skip
_MONEY_SUMS = ["final_cost", "failed_cost", "stated_delta"]
_SUMS = [*_INT_SUMS, *_MONEY_SUMS]
_HISTORY = ["provider", "resolution", "fingerprint", "status", "recorded_at", "day", "source_uri"]
_MERGE_EVERY = 8  # partial tables held before they are merged into one


class CostAccumulator:
    """The report's groups over every table ``add``-ed so far (tables of ``CREDIT_LEDGER_COLUMNS``)."""

    def __init__(self) -> None:
        self._partials: list[pa.Table] = []
        self._reasons: list[pa.Table] = []
        self._history: list[pa.Table] = []
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.rows += table.num_rows
        work = _work(table)
        self._partials.append(_merge([work]))
        self._reasons.append(_merge_reasons([_reason_partial(work)]))
        self._history.append(work.select(_HISTORY))
        if len(self._partials) >= _MERGE_EVERY:
            self._partials, self._reasons = [_merge(self._partials)], [_merge_reasons(self._reasons)]

    def groups(self) -> tuple[pa.Table, pa.Table]:
        """(the merged groups, one row per key with every sum; the failure/skip counts by reason)."""
        if not self.rows:
            return _merge([]), _merge_reasons([])
        history = pa.concat_tables(self._history)
        self._history = []
        unresolved = history.filter(failed_latest(history)).select(KEYS)
        extra = pa.table(
            {
                **{k: unresolved[k] for k in KEYS},
                **{c: pa.nulls(unresolved.num_rows, _TYPES[c]) for c in _SUMS if c != "failed_unresolved"},
                "failed_unresolved": pa.array(np.ones(unresolved.num_rows, dtype=np.int64)),
                "cost_is_estimate": pa.nulls(unresolved.num_rows, pa.bool_()),
            }
        ).select(_PARTIAL_COLUMNS)
        return _merge([*self._partials, extra]), _merge_reasons(self._reasons)


_MONEY = REPORT_COST_TYPE  # sums in the reports' money type, exact
_TYPES = {**{c: pa.int64() for c in _INT_SUMS}, **{c: _MONEY for c in _MONEY_SUMS}}
_PARTIAL_COLUMNS = [*KEYS, *_SUMS, "cost_is_estimate"]


def _work(table: pa.Table) -> pa.Table:
    """Per row: the group keys, 0/1 flags and amounts whose sums are the report's columns."""
    n = table.num_rows
    failed = pc.fill_null(pc.equal(table["status"], FAILED), False)
    cost = pc.fill_null(table["final_cost"].cast(_MONEY), pa.scalar(ZERO, _MONEY))
    return pa.table(
        {
            "provider": table["provider"],
            "resolution": table["resolution"],
            "day": pc.cast(table["recorded_at"], pa.date32()),
            "source_uri": table["source_uri"],
            "one": pa.array(np.ones(n, dtype=np.int64)),
            "succeeded": status_flag(table, SUCCEEDED),
            "failed": status_flag(table, FAILED),
            "skipped": status_flag(table, SKIPPED),
            "usable": usable_flag(table),
            "failed_unresolved": pa.array(np.zeros(n, dtype=np.int64)),
            "credits_reserved": table["credits_reserved"].cast(pa.int64()),
            "credits_final": table["credits_final"].cast(pa.int64()),
            "final_cost": cost,
            "failed_cost": pc.if_else(failed, cost, pa.scalar(ZERO, _MONEY)),
            "stated_delta": _stated_delta(table),
            "anomalies": pc.cast(pc.is_valid(table["cost_anomaly"]), pa.int64()),
            "cost_is_estimate": pc.fill_null(table["cost_is_estimate"], False),
            "status": table["status"],
            "error_code": pc.fill_null(table["error_code"], "unknown"),
            "fingerprint": table["fingerprint"],
            "recorded_at": table["recorded_at"],
        }
    )


def _stated_delta(table: pa.Table) -> pa.ChunkedArray:
    """Per succeeded row with a provider-stated cost: that cost minus the table price (a task has one
    succeeded row, so the sum is per task); 0 elsewhere."""
    stated, listed = table["stated_cost"].cast(COST_TYPE), table["list_price"].cast(COST_TYPE)
    delta = pc.subtract(stated, pc.fill_null(listed, pa.scalar(ZERO, COST_TYPE))).cast(_MONEY)
    keep = pc.fill_null(pc.and_(status_flag(table, SUCCEEDED).cast(pa.bool_()), pc.is_valid(stated)), False)
    return pc.if_else(keep, delta, pa.scalar(ZERO, _MONEY))


def _merge(partials: list[pa.Table]) -> pa.Table:
    """Rows with the ``_PARTIAL_COLUMNS`` (work rows or partial groups) summed per key."""
    if not partials:
        return (
            pa.schema([(k, t) for k, t in _KEY_TYPES.items()] + [(c, _TYPES[c]) for c in _SUMS])
            .append(pa.field("cost_is_estimate", pa.bool_()))
            .empty_table()
        )
    table = pa.concat_tables([p.select(_PARTIAL_COLUMNS) for p in partials])
    merged = table.group_by(KEYS, use_threads=False).aggregate(
        [(c, "sum") for c in _SUMS] + [("cost_is_estimate", "any")]
    )
    return merged.rename_columns([*KEYS, *_SUMS, "cost_is_estimate"]).select(_PARTIAL_COLUMNS)


_KEY_TYPES = {"provider": pa.string(), "resolution": pa.string(), "day": pa.date32(), "source_uri": pa.string()}
_REASON_KEYS = [*KEYS, "status", "error_code"]


def _reason_partial(work: pa.Table) -> pa.Table:
    bad = work.filter(pc.fill_null(pc.is_in(work["status"], value_set=pa.array([FAILED, SKIPPED])), False))
    return bad.select(_REASON_KEYS).append_column("rows", pa.array(np.ones(bad.num_rows, dtype=np.int64)))


def _merge_reasons(partials: list[pa.Table]) -> pa.Table:
    if not partials:
        fields = [*_KEY_TYPES.items(), ("status", pa.string()), ("error_code", pa.string()), ("rows", pa.int64())]
        return pa.schema(fields).empty_table()
    merged = pa.concat_tables(partials).group_by(_REASON_KEYS, use_threads=False).aggregate([("rows", "sum")])
    return merged.rename_columns([*_REASON_KEYS, "rows"])


# -- the frame ------------------------------------------------------------------------------------------
def cost_report_frame(groups: pa.Table, reasons: pa.Table, prices: PriceTable) -> pd.DataFrame:
    """The report (``CREDIT_COST_COLUMNS``) of merged groups, sorted by day, provider, resolution, source.

    Built a column at a time, and every object column holds one Python object per distinct value
    (``_shared``, ``_Memo``): a year of groups is tens of thousands of rows of a dozen object columns;
    Decimals are immutable, so sharing them is safe.
    """
    if groups.num_rows == 0:
        return empty_report(CREDIT_COST_COLUMNS)
    groups = _sorted(groups)
    zero = pa.scalar(ZERO, _MONEY)
    df = pd.DataFrame({k: _shared(groups[k]) for k in KEYS})
    for name, column in (("requests", "one"), ("succeeded", "succeeded"), ("failed", "failed"), ("skipped", "skipped")):
        df[name] = groups[column].to_numpy()
    df["usable"] = pc.fill_null(groups["usable"], 0).to_numpy()
    df["failed_unresolved"] = pc.fill_null(groups["failed_unresolved"], 0).to_numpy()
    for name in ("credits_reserved", "credits_final"):
        df[name] = groups[name].to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    df["final_cost"] = _shared(pc.fill_null(groups["final_cost"], zero))
    df["cost_lost_to_failures"] = _shared(pc.fill_null(groups["failed_cost"], zero))
    df["stated_vs_list"] = _shared(pc.fill_null(groups["stated_delta"], zero))
    df["cost_anomalies"] = pc.fill_null(groups["anomalies"], 0).to_numpy()
    _derived_money(df, groups, prices)
    by_reason = _reasons_json(reasons)
    keys = list(zip(df["provider"], df["resolution"], df["day"], df["source_uri"], strict=True))
    df["failures_by_reason"] = [by_reason[FAILED].get(k, "{}") for k in keys]
    df["skips_by_reason"] = [by_reason[SKIPPED].get(k, "{}") for k in keys]
    return df[CREDIT_COST_COLUMNS]


def _shared(column: pa.ChunkedArray) -> np.ndarray:
    """``column`` as an object array holding one Python object per distinct value (None for nulls)."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    values = np.array([*encoded.dictionary.to_pylist(), None], dtype=object)
    return values[pc.fill_null(encoded.indices, len(values) - 1).to_numpy()]


class _Memo:
    """``fn`` called once per distinct argument tuple: equal inputs give the very same result object.

    Every value it serves is quantized to 6 places, so ``Decimal('8')`` and ``Decimal('8.000000')``,
    equal as keys, cannot give results that print differently."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.cache = fn, {}

    def __call__(self, *args: Any) -> Any:
        try:
            return self.cache[args]
        except KeyError:
            self.cache[args] = value = self.fn(*args)
            return value


def _derived_money(df: pd.DataFrame, groups: pa.Table, prices: PriceTable) -> None:
    """cost_unit, cost_per_success, cost_per_usable, estimated_usd and its per success and per usable image,
    cost_is_estimate, expected_cost and cost_delta."""
    cells = CellPrices(prices)
    cell = [cells(p, r) for p, r in zip(df["provider"], df["resolution"], strict=True)]
    final, succeeded = df["final_cost"].tolist(), df["succeeded"].tolist()
    # unrounded: for the delta
    raw = [c.per_image * s if c.known else None for c, s in zip(cell, succeeded, strict=True)]
    rounded = _Memo(quantize_cost)
    expected = [None if e is None else rounded(e) for e in raw]
    df["cost_unit"] = [cost_unit(prices, p) for p in df["provider"]]
    per = _Memo(per_item)
    df["cost_per_success"] = [per(f, s) for f, s in zip(final, succeeded, strict=True)]
    df["cost_per_usable"] = [per(f, u) for f, u in zip(final, df["usable"].tolist(), strict=True)]
    in_usd = _Memo(lambda p, f: usd(prices, p, f))
    df["estimated_usd"] = [
        in_usd(p, f) if c.known else None for p, f, c in zip(df["provider"], final, cell, strict=True)
    ]
    df["cost_per_success_usd"] = [
        None if u is None else per(u, s) for u, s in zip(df["estimated_usd"], succeeded, strict=True)
    ]
    df["cost_per_usable_usd"] = [
        None if u is None else per(u, n) for u, n in zip(df["estimated_usd"], df["usable"].tolist(), strict=True)
    ]
    estimate = groups["cost_is_estimate"].to_pylist()
    df["cost_is_estimate"] = [bool(a) or c.is_estimate for a, c in zip(estimate, cell, strict=True)]
    df["expected_cost"] = expected
    delta = _Memo(lambda f, e: quantize_cost(f - e))
    df["cost_delta"] = [None if e is None else delta(f, e) for f, e in zip(final, raw, strict=True)]


def _sorted(groups: pa.Table) -> pa.Table:
    """By day, then provider (the registry's order) and resolution (unknown ones last), then source."""
    order = {
        "_p": pc.fill_null(pc.index_in(groups["provider"], value_set=pa.array(PROVIDERS.names(), pa.string())), 99),
        "_r": pc.fill_null(pc.index_in(groups["resolution"], value_set=pa.array(list(RESOLUTION_ORDER))), 99),
    }
    keyed = pa.table({"day": groups["day"], **order, "source_uri": groups["source_uri"]})
    indices = pc.sort_indices(keyed, sort_keys=[(c, "ascending", "at_end") for c in keyed.column_names])
    return groups.take(indices)


def _reasons_json(reasons: pa.Table) -> dict[str, dict[tuple, str]]:
    """{status: {group key: '{"code": rows}'}}, codes sorted."""
    counts: dict[str, dict[tuple, dict[str, int]]] = {FAILED: defaultdict(dict), SKIPPED: defaultdict(dict)}
    columns = [reasons[c].to_pylist() for c in (*KEYS, "status", "error_code", "rows")]
    for p, r, d, s, status, code, rows in zip(*columns, strict=True):
        counts[status][(p, r, d, s)][code] = rows
    # one string per distinct set of counts, written once: most groups share a few
    text = _Memo(lambda items: json.dumps(dict(items), sort_keys=True))
    return {status: {k: text(tuple(sorted(v.items()))) for k, v in by_key.items()} for status, by_key in counts.items()}
