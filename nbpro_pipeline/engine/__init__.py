"""Runs one (provider, resolution) cell of prompts through a provider: ``run_cell`` is the one entry
point (see ``run``); one prompt's life is ``steps``, its record ``attempt``, its outcomes ``outcomes``."""

import pyarrow as pa

from nbpro_pipeline.engine.outcomes import RESUMABLE_CODES
from nbpro_pipeline.engine.report import CellReport, StoredImage
from nbpro_pipeline.engine.rows import rows_for_cell
from nbpro_pipeline.engine.run import CellResult, run_cell, run_cell_sync
from nbpro_pipeline.engine.settings import EngineSettings, RunInfo

# A process that runs cells uses the system allocator for Arrow: mimalloc keeps the freed pages of the
# prompt table and ledger parts, so RSS grew with the prompts (figures: docs/performance.md, memory).
pa.set_memory_pool(pa.system_memory_pool())

__all__ = [
    "RESUMABLE_CODES",
    "CellReport",
    "CellResult",
    "EngineSettings",
    "RunInfo",
    "StoredImage",
    "rows_for_cell",
    "run_cell",
    "run_cell_sync",
]
