"""One cell run outside Dagster: prompt tables in, the engine's CellRunner over the real storage root.

``nbpro run-cell`` uses it, and so does ``bench/chaos.py``, which kills such runs with SIGKILL and runs
them again: a run here writes exactly what a ``generated_images`` materialization writes (images,
journal, ledger under the storage root), so a crash test of this is a crash test of the pipeline.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field, SecretStr

import nbpro_pipeline
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.engine.cell import CellRunner
from nbpro_pipeline.engine.report import CellReport
from nbpro_pipeline.engine.rows import rows_for_cell
from nbpro_pipeline.engine.settings import EngineSettings, RunInfo
from nbpro_pipeline.models.common import Provider, Resolution
from nbpro_pipeline.models.prompt import PromptRow
from nbpro_pipeline.providers import OdiRouterClient, PollPolicy, RetryPolicy, RivyaClient
from nbpro_pipeline.providers.base import ProviderClient
from nbpro_pipeline.storage.filesystem import Storage


class CellJob(BaseModel):
    """Everything one standalone cell run needs; the key is a SecretStr so it never prints."""

    provider: Provider
    resolution: Resolution
    storage_root: str
    base_url: str
    api_key: SecretStr
    run_id: str = Field(default_factory=lambda: f"cli-{uuid.uuid4().hex[:12]}")
    settings: EngineSettings = Field(default_factory=EngineSettings)
    poll: PollPolicy = Field(default_factory=PollPolicy)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)

    @property
    def partition_key(self) -> str:
        return f"{self.provider.value}|{self.resolution.value}"


def load_cell_rows(
    tables: Sequence[str], provider: Provider, resolution: Resolution, *, reference_roots: Sequence[str] | None = None
) -> tuple[list[PromptRow], int]:
    """The rows of ``tables`` eligible for the cell, and how many rows were rejected on the way."""
    from nbpro_pipeline.prompts import load_prompt_tables

    result = load_prompt_tables(list(tables), reference_roots=reference_roots)
    return rows_for_cell(result.accepted, provider, resolution), result.rejected.num_rows


def make_client(job: CellJob) -> ProviderClient:
    cls = RivyaClient if job.provider is Provider.RIVYA else OdiRouterClient
    return cls(
        job.base_url,
        job.api_key,
        retry=job.retry,
        poll=job.poll,
        max_connections=max(16, job.settings.max_in_flight * 2),
    )


async def run_cell_job(
    job: CellJob,
    rows: list[PromptRow],
    *,
    prices: PriceTable | None = None,
    logger: Any = None,
    client_factory: Callable[[CellJob], ProviderClient] = make_client,
) -> CellReport:
    """Run the cell once; the client is made inside the running loop (an async client belongs to it)."""
    async with client_factory(job) as client:
        runner = CellRunner(
            provider=job.provider,
            resolution=job.resolution,
            client=client,
            storage=Storage(job.storage_root),
            run=RunInfo(
                run_id=job.run_id, partition_key=job.partition_key, pipeline_version=nbpro_pipeline.__version__
            ),
            settings=job.settings,
            prices=prices or PriceTable(),
            logger=logger,
        )
        return await runner.run(rows)


def run_cell(job: CellJob, rows: list[PromptRow], **kw: Any) -> CellReport:
    return asyncio.run(run_cell_job(job, rows, **kw))
