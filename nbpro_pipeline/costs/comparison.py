"""``provider_comparison`` computed as the rows are read: one ``CellComparison`` per cell, fed batches.

What a cell's row needs of its rows is either a sum (requests, statuses, size mismatches, cost: Arrow
sums ``decimal128`` exactly and the batch sums are added as ``Decimal``) or a set: the distinct
fingerprints of its successes (``images``), the latencies of its successes (p50/p95) and, for the common
prompts, each row's prompt key and cost. Only those narrow columns are kept, not the rows: a few tens
of MB for a cell of a million-row ledger. The common prompts of a resolution are then the intersection
of its cells' succeeded prompt keys. ``reports.provider_comparison`` (a table, split by cell) and
``reports.provider_comparison_for`` (a storage root, read a cell at a time) both go through here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.costs.latest_rows import FAILED, SKIPPED, SUCCEEDED
from nbpro_pipeline.costs.money import ZERO, as_decimal, per_item
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.costs.report_cells import CellPrice, CellPrices, cost_unit, usd
from nbpro_pipeline.costs.report_columns import REPORT_COST_TYPE

_MONEY = REPORT_COST_TYPE  # sums in the reports' money type, exact


def prompt_key(table: pa.Table) -> pa.ChunkedArray | pa.Array:
    """One string per (prompt_id, prompt_sha256): a single hash key is far lighter than two."""
    return pc.binary_join_element_wise(
        table["prompt_id"], table["prompt_sha256"], "\x1f", null_handling="replace", null_replacement="\x00"
    )


def _count(mask: Any) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


class CellComparison:
    """One (provider, resolution) cell's figures over every table ``add``-ed (``COMPARISON_LEDGER_COLUMNS``)."""

    def __init__(self, provider: str | None, resolution: str | None) -> None:
        self.provider, self.resolution = provider, resolution
        self.rows = self.succeeded = self.failed = self.skipped = self.size_mismatches = 0
        self.final_cost = ZERO
        self.estimate = False
        self._images: list[pa.Array] = []
        self._latencies: list[np.ndarray] = []
        self._costs: list[pa.Table] = []  # (key, cost, ok) of every row: the common prompts and their cost

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        ok = pc.fill_null(pc.equal(table["status"], SUCCEEDED), False)
        cost = pc.fill_null(table["final_cost"].cast(_MONEY), pa.scalar(ZERO, _MONEY))
        self.rows += table.num_rows
        self.succeeded += _count(ok)
        self.failed += _count(pc.fill_null(pc.equal(table["status"], FAILED), False))
        self.skipped += _count(pc.fill_null(pc.equal(table["status"], SKIPPED), False))
        self.size_mismatches += _count(pc.fill_null(pc.equal(table["error_code"], "size_mismatch"), False))
        self.final_cost += as_decimal(pc.sum(cost).as_py())
        self.estimate = self.estimate or bool(pc.any(pc.fill_null(table["cost_is_estimate"], False)).as_py())
        self._images.append(pc.unique(table["fingerprint"].filter(ok)))
        latency = table["latency_s"].filter(pc.and_(ok, pc.is_valid(table["latency_s"])))
        self._latencies.append(latency.to_numpy())
        self._costs.append(pa.table({"key": prompt_key(table), "cost": cost, "ok": ok}))

    def release(self) -> None:
        """Drop the kept columns once the cell's row is made (the counters stay)."""
        self._images, self._latencies, self._costs = [], [], []

    def images(self) -> int:
        """Distinct fingerprints with a succeeded row."""
        if not self._images:
            return 0
        return int(pc.count_distinct(pa.chunked_array(self._images, pa.string()), mode="only_valid").as_py())

    def succeeded_keys(self) -> pa.ChunkedArray:
        """The prompt keys of this cell's succeeded rows (a prompt may appear more than once)."""
        costs = pa.concat_tables(self._costs) if self._costs else pa.table({"key": pa.array([], pa.string())})
        return costs["key"].filter(costs["ok"]) if self._costs else costs["key"]

    def cost_of(self, keys: pa.Array) -> Decimal:
        """Every row's cost (failed attempts too) of the prompts ``keys``."""
        if not len(keys) or not self._costs:
            return ZERO
        costs = pa.concat_tables(self._costs)
        return as_decimal(pc.sum(costs["cost"].filter(pc.is_in(costs["key"], value_set=keys))).as_py())

    def latency_quantiles(self) -> tuple[float, float]:
        """p50 and p95 (linear interpolation, as numpy) of succeeded rows' latency."""
        values = np.concatenate(self._latencies) if self._latencies else np.array([])
        if not len(values):
            return np.nan, np.nan
        p50, p95 = np.percentile(values, [50, 95])
        return float(p50), float(p95)


def common_keys(cells: list[CellComparison]) -> pa.Array:
    """The prompt keys that succeeded in every one of ``cells`` (one resolution's), where more than one."""
    if len(cells) < 2:
        return pa.array([], pa.string())
    common = cells[0].succeeded_keys()
    for cell in cells[1:]:  # is_in hashes the other side once; only what is common is made distinct
        common = common.filter(pc.is_in(common, value_set=cell.succeeded_keys().combine_chunks()))
    return pc.unique(common)


def comparison_rows(cells: list[CellComparison], prices: PriceTable) -> list[dict[str, Any]]:
    """One ``COMPARISON_COLUMNS`` row per cell, the common prompts taken per resolution (every cell of a
    resolution present must be among ``cells``)."""
    by_resolution: dict[str | None, list[CellComparison]] = {}
    for cell in cells:
        by_resolution.setdefault(cell.resolution, []).append(cell)
    common = {resolution: common_keys(group) for resolution, group in by_resolution.items()}
    cell_prices = CellPrices(prices)
    rows = []
    for cell in cells:
        rows.append(_row(cell, prices, cell_prices(cell.provider, cell.resolution), common[cell.resolution]))
        cell.release()
    return rows


def _row(cell: CellComparison, prices: PriceTable, price: CellPrice, common: pa.Array) -> dict[str, Any]:
    provider, resolution, known = cell.provider, cell.resolution, price.known
    images, final_cost, shared = cell.images(), cell.final_cost, len(common)
    spent_common = cell.cost_of(common)
    p50, p95 = cell.latency_quantiles()
    attempts = cell.succeeded + cell.failed
    return {
        "provider": provider,
        "resolution": resolution,
        "cost_unit": cost_unit(prices, provider),
        "requests": cell.rows,
        "succeeded": cell.succeeded,
        "failed": cell.failed,
        "skipped": cell.skipped,
        "images": images,
        "failure_rate": cell.failed / attempts if attempts else np.nan,
        "size_mismatches": cell.size_mismatches,
        "final_cost": final_cost,
        "cost_per_image": per_item(final_cost, images),
        "estimated_usd": usd(prices, provider, final_cost) if known else None,
        "cost_per_image_usd": usd(prices, provider, per_item(final_cost, images)) if known else None,
        "price_per_image": price.per_image,
        "cost_is_estimate": cell.estimate or price.is_estimate,
        "latency_p50_s": p50,
        "latency_p95_s": p95,
        "common_prompts": shared,
        "common_cost": spent_common,
        "common_cost_usd": usd(prices, provider, spent_common) if known else None,
        "common_cost_per_image_usd": usd(prices, provider, per_item(spent_common, shared)) if known else None,
    }
