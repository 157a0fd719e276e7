"""Runs one (provider, resolution) cell of prompts through a provider: see ``cell``."""

from nbpro_pipeline.engine.cell import CellRunner
from nbpro_pipeline.engine.report import CellReport, StoredImage
from nbpro_pipeline.engine.rows import rows_for_cell
from nbpro_pipeline.engine.settings import EngineSettings, RunInfo

__all__ = ["CellReport", "CellRunner", "EngineSettings", "RunInfo", "StoredImage", "rows_for_cell"]
