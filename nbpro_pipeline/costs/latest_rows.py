"""Which ledger rows count how: status flags as 0/1 columns, and the latest row of each fingerprint."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.costs._ledger import LedgerLike, as_ledger_table
from nbpro_pipeline.models.ledger import OutcomeStatus

SUCCEEDED, FAILED, SKIPPED = (s.value for s in OutcomeStatus)


def status_flag(table: pa.Table, status: str) -> pa.ChunkedArray:
    """1 where the row's status is ``status``, else 0."""
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


def failed_latest(table: pa.Table) -> pa.Array:
    """True for failed rows that are still the latest row of their (provider, resolution, fingerprint).

    Same answer as ``failed & latest_mask(table)``, but the ranking runs only over the rows of
    fingerprints that ever failed (a few percent), not over a million rows.
    """
    n = table.num_rows
    failed = pc.fill_null(pc.equal(table["status"], FAILED), False)
    out = np.zeros(n, dtype=bool)
    if n == 0 or not pc.any(failed).as_py():
        return pa.array(out)
    suspects = pc.unique(table.filter(failed)["fingerprint"])
    mask = pc.fill_null(pc.is_in(table["fingerprint"], value_set=suspects), False)
    candidates = np.flatnonzero(mask.to_numpy())
    subset = table.filter(mask)  # chunk by chunk: ``take`` would first concatenate every chunk of the table
    latest = latest_mask(subset).to_numpy(zero_copy_only=False)
    out[candidates] = latest & pc.fill_null(pc.equal(subset["status"], FAILED), False).to_numpy(zero_copy_only=False)
    return pa.array(out)
