"""Report tables over the ledger: what was spent, where, on what, and how the two providers compare.

Money stays exact: sums are taken by Arrow over ``decimal128`` columns and every money column of a report
holds ``decimal.Decimal`` values (pandas ``object`` dtype), written back to Parquet as ``decimal128(38, 6)``
by ``report_parquet.write_report``. Only rates, shares and latencies are floats.

Which ledger rows count:
- Costs always sum **every** row: money spent on an attempt that failed, before a re-run succeeded, is real.
- ``credit_cost_report`` counts **events**: every row is one request outcome recorded on its day, so a
  failure on Monday and the success of its re-run on Tuesday both appear. Its ``failed_unresolved`` column
  counts only failed rows that are still the latest outcome of their (provider, resolution, fingerprint).
- ``provider_comparison`` counts attempts for the failure rate (failed / (succeeded + failed); skipped rows
  were never submitted) and distinct fingerprints for ``images``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.costs._ledger import LedgerLike, as_ledger_table
from nbpro_pipeline.costs.comparison import CellComparison, comparison_rows
from nbpro_pipeline.costs.cost_report import CostAccumulator, cost_report_frame
from nbpro_pipeline.costs.latest_rows import FAILED, SKIPPED
from nbpro_pipeline.costs.money import ZERO, as_decimal, is_missing
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.costs.report_cells import by_provider_order, sort_cells
from nbpro_pipeline.costs.report_columns import (
    COMPARISON_COLUMNS,
    COMPARISON_LEDGER_COLUMNS,
    CREDIT_COST_COLUMNS,
    CREDIT_LEDGER_COLUMNS,
    FAILURE_REASON_COLUMNS,
    empty_report,
)
from nbpro_pipeline.costs.scan import cell_batches, ledger_batches
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import PROVIDERS


# -- credit_cost_report -------------------------------------------------------------------------------
def credit_cost_report(ledger: LedgerLike, prices: PriceTable) -> pd.DataFrame:
    """One row per (provider, resolution, UTC day of ``recorded_at``, source_uri); columns in
    ``CREDIT_COST_COLUMNS``. Counts are events (ledger rows); see the module docstring."""
    accumulator = CostAccumulator()
    accumulator.add(as_ledger_table(ledger, CREDIT_LEDGER_COLUMNS))
    return cost_report_frame(*accumulator.groups(), prices)


def failure_reasons(ledger: LedgerLike) -> pd.DataFrame:
    """Long form of failures by reason: one row per (provider, resolution, day, source_uri, status,
    error_code) over failed and skipped rows, with the row count and their exact cost."""
    table = as_ledger_table(ledger)
    bad = table.filter(pc.fill_null(pc.is_in(table["status"], value_set=pa.array([FAILED, SKIPPED])), False))
    if bad.num_rows == 0:
        return empty_report(FAILURE_REASON_COLUMNS)
    work = pa.table(
        {
            "provider": bad["provider"],
            "resolution": bad["resolution"],
            "day": pc.cast(bad["recorded_at"], pa.date32()),
            "source_uri": bad["source_uri"],
            "status": bad["status"],
            "error_code": pc.fill_null(bad["error_code"], "unknown"),
            "cost": pc.fill_null(bad["final_cost"], pa.scalar(ZERO, bad.schema.field("final_cost").type)),
        }
    )
    keys = FAILURE_REASON_COLUMNS[:6]
    agg = work.group_by(keys, use_threads=False).aggregate([("status", "count"), ("cost", "sum")])
    df = pd.DataFrame(
        [
            {**{k: g[k] for k in keys}, "rows": g["status_count"], "cost": as_decimal(g["cost_sum"])}
            for g in agg.to_pylist()
        ],
        columns=FAILURE_REASON_COLUMNS,
    )
    return sort_cells(df, extra=["day", "source_uri", "status", "error_code"])


# -- provider_comparison ------------------------------------------------------------------------------
def provider_comparison(ledger: LedgerLike, prices: PriceTable) -> pd.DataFrame:
    """One row per (provider, resolution), resolutions grouped together; columns in ``COMPARISON_COLUMNS``.

    ``common_*`` columns restrict both sides to the prompts (same ``prompt_id`` and ``prompt_sha256``)
    that succeeded on every provider at that resolution, so the costs compare like with like. Computed
    by Arrow over the columns, a cell at a time (``costs.comparison``); sums stay exact decimals.
    """
    table = as_ledger_table(ledger, COMPARISON_LEDGER_COLUMNS)
    if table.num_rows == 0:
        return empty_report(COMPARISON_COLUMNS)
    cells = []
    for pair in table.group_by(["provider", "resolution"], use_threads=False).aggregate([]).to_pylist():
        cell = CellComparison(pair["provider"], pair["resolution"])
        cell.add(table.filter(_is_cell(table, pair["provider"], pair["resolution"])))
        cells.append(cell)
    rows = comparison_rows(cells, prices)
    return sort_cells(pd.DataFrame(rows, columns=COMPARISON_COLUMNS), resolution_first=True)


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
        return empty_report(CREDIT_COST_COLUMNS)
    return cost_report_frame(pa.concat_tables(groups), pa.concat_tables(reasons), prices)


def provider_comparison_for(storage: Any, prices: PriceTable) -> pd.DataFrame:
    """``provider_comparison`` of every row under ``storage``, each cell read in batches
    (``costs.scan``) into its ``CellComparison``, a resolution at a time: memory holds a batch and the
    narrow columns of one resolution's cells."""
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
        return empty_report(COMPARISON_COLUMNS)
    return sort_cells(pd.DataFrame(rows, columns=COMPARISON_COLUMNS), resolution_first=True)


# -- totals -------------------------------------------------------------------------------------------
def totals_for(storage: Any) -> dict[str, Decimal]:
    """``totals_by_provider`` of every row under ``storage``, summed batch by batch from two columns."""
    totals: dict[str, Decimal] = {}
    for batch in ledger_batches(storage, ["provider", "final_cost"]):
        for provider, amount in totals_by_provider(batch).items():
            totals[provider] = totals.get(provider, ZERO) + amount
    return by_provider_order(totals)


def totals_of_report(df: pd.DataFrame) -> dict[str, Decimal]:
    """``totals_by_provider`` from a ``credit_cost_report`` frame (its ``final_cost`` sums every row of
    its groups), so that an asset that has the report need not read the ledger again."""
    totals: dict[str, Decimal] = {}
    for provider, amount in zip(df["provider"], df["final_cost"], strict=True):
        totals[provider] = totals.get(provider, ZERO) + as_decimal(None if is_missing(amount) else amount)
    return by_provider_order(totals)


def totals_by_provider(ledger: LedgerLike) -> dict[str, Decimal]:
    """Exact sum of ``final_cost`` of every row, per provider present in the ledger (in its unit), to
    reconcile with the provider's own billing."""
    table = as_ledger_table(ledger, ["provider", "final_cost"])
    if table.num_rows == 0:
        return {}
    agg = table.group_by("provider", use_threads=False).aggregate([("final_cost", "sum")])
    return by_provider_order({row["provider"]: as_decimal(row["final_cost_sum"]) for row in agg.to_pylist()})
