"""Runs one (provider, resolution) cell of prompts through a provider: ``run_cell`` is the one entry
point (see ``run``); one prompt's life is ``steps``, its record ``attempt``, its outcomes ``outcomes``."""

import pyarrow as pa

from nbpro_pipeline.engine.outcomes import RESUMABLE_CODES
from nbpro_pipeline.engine.report import CellReport, StoredImage
from nbpro_pipeline.engine.rows import rows_for_cell
from nbpro_pipeline.engine.run import CellResult, run_cell, run_cell_sync
from nbpro_pipeline.engine.settings import EngineSettings, RunInfo

# A process that runs cells uses the system allocator for Arrow. With Arrow's bundled mimalloc, peak
# RSS of a cell run kept growing with the number of prompts although nothing was held (bench/memory.py:
# +25 MB from 1,000 to 6,000 prompts, +9 MB with the system allocator): it keeps freed pages of the
# prompt table and the ledger parts. Set on import, before the prompt table is read; the Arrow work
# of a cell is small, so nothing is lost. A process that only validates tables (``nbpro validate``,
# ``bench/ingest.py``) keeps mimalloc; the Dagster code location imports both, so its ``prompt_table``
# runs on the system allocator too (not benchmarked separately).
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
