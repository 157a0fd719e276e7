"""What ``nbpro estimate`` needs beyond the estimate itself: reading a ledger dataset, and the estimates as JSON
(as text: ``presentation.estimate_table``).

The cost functions take ledger rows as a table; this is the one place in ``costs`` that reads them from
storage, straight from the hive-partitioned Parquet dataset so it depends on nothing but its layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from nbpro_pipeline.costs.estimate import CellEstimate, by_provider


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


def estimates_json(estimates: Sequence[CellEstimate], *, ledger_rows: int | None, accepted: int, rejected: int) -> dict:
    """The estimates as JSON-ready data, decimals as strings."""
    totals = {p: str(sum((e.cost for e in mine), Decimal(0))) for p, mine in by_provider(estimates).items()}
    return {
        "cells": [e.to_json_dict() for e in estimates],
        "totals": totals,
        "total_estimated_usd": str(sum((e.estimated_usd for e in estimates), Decimal(0))),
        "accepted_rows": accepted,
        "rejected_entries": rejected,
        "ledger_rows": ledger_rows,
    }
