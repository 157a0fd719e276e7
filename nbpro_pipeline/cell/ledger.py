"""A cell's ledger as its checks and its view read it: one read per run, after the engine is done."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.ledger import read_ledger

# what the checks (accounting, stored images, reconciliation) and the state read of each row
CELL_LEDGER_COLUMNS = [
    "prompt_id",
    "prompt_sha256",
    "fingerprint",
    "task_id",
    "status",
    "error_code",
    "error_message",
    "final_cost",
    "image_uri",
    "image_sha256",
    "aspect_ratio",
    "output_format",
    "resolution",
    "width",
    "height",
    "latency_s",
    "recorded_at",
    "run_id",
]


@dataclass(frozen=True)
class CellLedger:
    """Every ledger row of one cell (``CELL_LEDGER_COLUMNS``, each task counted once), and which run's
    rows are "this run"."""

    provider: str  # the provider's name, as the report names it
    resolution: Resolution
    run_id: str
    table: pa.Table

    @cached_property
    def run_rows(self) -> pa.Table:
        """The rows this run wrote."""
        if self.table.num_rows == 0:
            return self.table
        return self.table.filter(pc.equal(self.table["run_id"], self.run_id))


def read_cell_ledger(storage: Storage, provider: str, resolution: Resolution, run_id: str) -> CellLedger:
    """The cell's ledger as it is now (one listing of the cell's directory and a read of its parts)."""
    table = read_ledger(storage, provider=provider, resolution=resolution, columns=CELL_LEDGER_COLUMNS)
    return CellLedger(provider=provider, resolution=Resolution(resolution), run_id=run_id, table=table)
