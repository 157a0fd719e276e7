"""One cell run outside Dagster: prompt tables in, ``run_cell`` over the real storage root.

``nbpro run-cell`` uses it, and so does ``bench/chaos.py``, which kills such runs with SIGKILL and runs
them again: a run here writes exactly what a ``generated_images`` materialization writes (images,
journal, ledger under the storage root), so a crash test of this is a crash test of the pipeline.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, SecretStr

import nbpro_pipeline
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.engine.report import CellReport
from nbpro_pipeline.engine.rows import rows_for_cell
from nbpro_pipeline.engine.run import run_cell
from nbpro_pipeline.engine.settings import EngineSettings, RunInfo
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.prompt import PromptRow
from nbpro_pipeline.providers.base import ProviderClient
from nbpro_pipeline.providers.factory import ClientSpec, make_client
from nbpro_pipeline.storage.filesystem import Storage


class CellJob(BaseModel):
    """Everything one standalone cell run needs; the key is a SecretStr so it never prints."""

    provider: str
    resolution: Resolution
    storage_root: str
    base_url: str
    api_key: SecretStr
    run_id: str = Field(default_factory=lambda: f"cli-{uuid.uuid4().hex[:12]}")
    settings: EngineSettings = Field(default_factory=EngineSettings)

    @property
    def partition_key(self) -> str:
        return f"{self.provider}|{self.resolution.value}"

    def client_spec(self) -> ClientSpec:
        return self.settings.client_spec(self.provider, self.base_url, self.api_key)


def load_cell_rows(
    tables: Sequence[str], provider: str, resolution: Resolution, *, reference_roots: Sequence[str] | None = None
) -> tuple[list[PromptRow], int]:
    """The rows of ``tables`` eligible for the cell, and how many rows were rejected on the way."""
    from nbpro_pipeline.prompts import load_prompt_tables

    result = load_prompt_tables(list(tables), reference_roots=reference_roots)
    return rows_for_cell(result.accepted, provider, resolution), result.rejected.num_rows


def job_client(job: CellJob) -> ProviderClient:
    """The job's client, from the one client factory (rate limited like every other)."""
    return make_client(job.client_spec())


async def run_job_async(
    job: CellJob, rows: list[PromptRow], *, prices: PriceTable | None = None, logger: Any = None
) -> CellReport:
    return (
        await run_cell(
            rows,
            client=lambda: job_client(job),
            provider=job.provider,
            resolution=job.resolution,
            storage=Storage(job.storage_root),
            run=RunInfo(
                run_id=job.run_id, partition_key=job.partition_key, pipeline_version=nbpro_pipeline.__version__
            ),
            settings=job.settings,
            prices=prices or PriceTable(),
            logger=logger,
        )
    ).report


def run_job(job: CellJob, rows: list[PromptRow], **kw: Any) -> CellReport:
    return asyncio.run(run_job_async(job, rows, **kw))
