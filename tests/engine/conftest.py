"""A harness for running cells against the per-test sandbox with fast poll/retry policies.

``harness.run(provider, rows)`` runs one cell over real HTTP; the helpers read back what the pipeline
recorded (its ledger, images) and what the sandbox says it billed, so a test can compare the two.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from nbpro_pipeline.costs.budget import BudgetGuard
from nbpro_pipeline.engine import CellReport, CellResult, EngineSettings, RunInfo, run_cell
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.prompt import PromptRow
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.providers import OdiRouterClient, RivyaClient
from nbpro_pipeline.providers.policies import PollPolicy, RetryPolicy
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, read_journal, read_ledger
from tests.providers.conftest import FAST_POLL, FAST_RETRY

R1K = Resolution.R1K
SETTINGS = EngineSettings(max_in_flight=16, progress_interval_s=60, ledger_flush_interval_s=60)
# for tests that look at the raw journal a run wrote (a run prunes the cell's journal when it ends)
KEEP_JOURNAL = SETTINGS.model_copy(update={"prune_journal_at_end": False})


def prompt_row(prompt_id: str, prompt: str | None = None, *, row_number: int = 1, **fields: Any) -> PromptRow:
    prompt = prompt or f"a test image for {prompt_id}"
    return PromptRow(
        prompt_id=prompt_id,
        prompt=prompt,
        prompt_sha256=hashlib.sha256(prompt.encode()).hexdigest(),
        source_uri="file:///data/prompts.csv",
        source_sha256="0" * 64,
        row_number=row_number,
        **fields,
    )


def prompt_rows(n: int, prefix: str = "p", **fields: Any) -> list[PromptRow]:
    return [prompt_row(f"{prefix}{i:03d}", row_number=i + 1, **fields) for i in range(n)]


def fingerprint(row: PromptRow, provider: Provider, resolution: Resolution = R1K) -> str:
    """The engine's fingerprint of a row without references."""
    return GenerationRequest(
        prompt=row.prompt, aspect_ratio=row.aspect_ratio, resolution=resolution, output_format=row.output_format
    ).fingerprint(provider)


def sandbox_amounts(sandbox, provider: Provider) -> dict[str, Decimal]:
    """Net billed amount per task id, from the sandbox's billing ledger."""
    out: dict[str, Decimal] = {}
    for e in sandbox.ledger(provider.value):
        out[e["task_id"]] = out.get(e["task_id"], Decimal(0)) + Decimal(str(e["amount"]))
    return out


@dataclass
class BorrowedClientRun:
    """``harness.runner(provider, client).run(rows)``: a cell run over a client the test made (and may
    have patched); ``run_cell`` still opens and closes it, as it does every client."""

    harness: Harness
    provider: Provider
    client: Any
    kw: dict[str, Any]

    async def run(self, rows: list[PromptRow]) -> CellReport:
        return await self.harness.run_with(self.provider, lambda: self.client, rows, **self.kw)


@dataclass
class Harness:
    sandbox: Any
    storage: Storage
    keys: dict[Provider, str]
    results: list[CellResult] = field(default_factory=list)

    def client(
        self,
        provider: Provider,
        *,
        key: str | None = None,
        retry: RetryPolicy = FAST_RETRY,
        poll: PollPolicy = FAST_POLL,
        seed: int = 1,
    ):
        cls, url = (
            (RivyaClient, self.sandbox.rivya_url)
            if provider is Provider.RIVYA
            else (OdiRouterClient, self.sandbox.odirouter_url)
        )
        return cls(url, key or self.keys[provider], retry=retry, poll=poll, seed=seed)

    def runner(self, provider: Provider, client, **kw: Any) -> BorrowedClientRun:
        return BorrowedClientRun(self, provider, client, kw)

    async def run_with(
        self,
        provider: Provider | str,
        client_factory,
        rows: list[PromptRow],
        *,
        run_id: str = "run-1",
        resolution: Resolution = R1K,
        settings: EngineSettings | None = None,
        budget: BudgetGuard | None = None,
    ) -> CellReport:
        """One cell run through the engine's one entry point; its ``CellResult`` is kept in ``results``."""
        result = await run_cell(
            rows,
            client=client_factory,
            provider=provider,
            resolution=resolution,
            storage=self.storage,
            run=RunInfo(run_id=run_id, partition_key=f"{provider}|{resolution.value}", pipeline_version="test"),
            settings=settings or SETTINGS,
            budget=budget,
        )
        self.results.append(result)
        return result.report

    async def run(self, provider: Provider, rows: list[PromptRow], *, key: str | None = None, **kw: Any) -> CellReport:
        return await self.run_with(provider, lambda: self.client(provider, key=key), rows, **kw)

    # -- what the pipeline recorded ---------------------------------------------------------------
    def ledger(self, provider: Provider | None = None, resolution: Resolution | None = None) -> pa.Table:
        return read_ledger(self.storage, provider=provider, resolution=resolution)

    def rows(self, provider: Provider | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        table = self.ledger(provider)
        if run_id is not None:
            table = table.filter(pc.equal(table["run_id"], run_id))
        return table.to_pylist()

    def ledger_total(self, provider: Provider) -> Decimal:
        total = pc.sum(self.ledger(provider)["final_cost"]).as_py()
        return Decimal(0) if total is None else Decimal(total)

    def ledger_by_task(self, provider: Provider) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for r in self.rows(provider):
            if r["task_id"]:
                out[r["task_id"]] = out.get(r["task_id"], Decimal(0)) + r["final_cost"]
        return out

    def journal(self, provider: Provider, resolution: Resolution = R1K):
        return read_journal(self.storage, provider, resolution)

    # -- what the sandbox says ----------------------------------------------------------------------
    def sandbox_total(self, provider: Provider) -> Decimal:
        return sum(sandbox_amounts(self.sandbox, provider).values(), Decimal(0))

    def tasks_created(self, provider: Provider) -> int:
        return self.sandbox.stats()[provider.value]["tasks_created"]

    def assert_reconciles(self, provider: Provider) -> None:
        """Ledger and sandbox agree exactly, in total and per task (tasks with a zero net are ignored)."""
        assert self.ledger_total(provider) == self.sandbox_total(provider)
        billed = {t: a for t, a in sandbox_amounts(self.sandbox, provider).items() if a}
        recorded = {t: a for t, a in self.ledger_by_task(provider).items() if a}
        assert recorded == billed

    def configure(self, provider: Provider, **section: Any) -> None:
        self.sandbox.set_config({provider.value: section})

    def scratch_is_empty(self) -> bool:
        scratch = Path(self.storage.scratch_dir())
        return not any(scratch.iterdir())


@pytest.fixture
def harness(sandbox, tmp_path, rivya_key, odirouter_key) -> Harness:
    return Harness(
        sandbox=sandbox,
        storage=Storage(tmp_path / "store"),
        keys={Provider.RIVYA: rivya_key, Provider.ODIROUTER: odirouter_key},
    )


@pytest.fixture(params=list(Provider), ids=lambda p: p.value)
def provider(request) -> Provider:
    return request.param


def price(provider: Provider) -> Decimal:
    return Decimal(8) if provider is Provider.RIVYA else Decimal("0.15")
