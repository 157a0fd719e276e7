"""The one entry point that runs a cell: ``run_cell`` (async) and ``run_cell_sync``.

It makes the provider client inside the running loop (an async HTTP client belongs to the loop that
opened it), runs every eligible prompt through ``steps.PromptSteps`` with a bounded pool of workers,
finishes tasks journaled by earlier runs whose rows are gone, asks the provider what a sample of the
run's tasks cost, and closes the client. The Dagster asset, ``nbpro run-cell``, the benches and the
tests all call it; ``audit`` then checks what it produced. Nothing here knows Dagster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.costs.budget import BudgetGuard
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.engine.booking import Books
from nbpro_pipeline.engine.context import Cell, cell_price
from nbpro_pipeline.engine.fingerprints import EligibleRows
from nbpro_pipeline.engine.history import load_history
from nbpro_pipeline.engine.maintenance import after_run
from nbpro_pipeline.engine.progress import Progress, ProgressSnapshot
from nbpro_pipeline.engine.reconcile import ProviderCharges, ask_provider
from nbpro_pipeline.engine.references import ReferenceResolver
from nbpro_pipeline.engine.report import CellReport
from nbpro_pipeline.engine.rows import CellRows
from nbpro_pipeline.engine.settings import EngineSettings, RunInfo
from nbpro_pipeline.engine.slots import slots_for
from nbpro_pipeline.engine.steps import PromptSteps
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.prompt import PromptRow
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.providers.base import ProviderClient
from nbpro_pipeline.storage.filesystem import Storage, cell_dir
from nbpro_pipeline.storage.journal import Journal
from nbpro_pipeline.storage.lease import HeldLease, cell_lease
from nbpro_pipeline.storage.ledger_id import ledger_id
from nbpro_pipeline.usability.judge import CellJudge, earlier_paid_images

log = logging.getLogger(__name__)

ClientFactory = Callable[[], AbstractAsyncContextManager[ProviderClient]]


class CellResult(BaseModel):
    """What a cell run produced, for the checks and the asset's metadata."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_id: str
    report: CellReport
    eligible: EligibleRows  # fingerprint -> prompt id of every eligible prompt this run saw (Arrow columns)
    provider_charges: ProviderCharges  # the provider's word on a sample of this run's tasks
    price: Decimal  # the image price the run used, in the provider's unit


async def run_cell(
    rows: Iterable[PromptRow],
    *,
    client: ClientFactory,
    resolution: Resolution,
    storage: Storage,
    run: RunInfo,
    provider: str | None = None,
    settings: EngineSettings | None = None,
    prices: PriceTable | None = None,
    budget: BudgetGuard | None = None,
    logger: Any = None,
    on_progress: Callable[[ProgressSnapshot], None] | None = None,
) -> CellResult:
    """Run one (provider, resolution) cell; ``client()`` makes the provider client, which this owns
    and closes. ``provider``, when given, must be what the client serves (a guard against wiring a
    cell to the wrong resource). The cell's lease on the storage root is held throughout: ``CellBusy``
    if another run holds it, ``LeaseLost`` (after the run's flushes) if it was taken over mid-run.
    ``on_progress`` gets each progress reading (from a worker thread), for a caller that shows it live."""
    settings = settings or EngineSettings()
    async with (
        client() as c,
        cell_lease(storage, c.traits.name, resolution, run.run_id, settings.lease_policy()) as lease,
    ):
        traits = c.traits
        if provider is not None and str(provider) != str(traits.name):
            raise ValueError(f"a {traits.name} client cannot run a {provider} cell")
        cell = Cell(
            traits=traits,
            resolution=resolution,
            storage=storage,
            run=run,
            settings=settings,
            price=cell_price(traits, prices or PriceTable(), resolution),
            ledger_id=await asyncio.to_thread(ledger_id, storage),
        )
        cell_run = CellRun(cell, c, budget=budget, logger=logger or log, lease=lease, on_progress=on_progress)
        report = await cell_run.run(rows)
        lease.check()
        charges = await cell_run.ask_provider()
    return CellResult(
        run_id=run.run_id,
        report=report,
        eligible=cell_run.steps.eligible.rows(),
        provider_charges=charges,
        price=cell.price.per_image,
    )


def run_cell_sync(rows: Iterable[PromptRow], **kw: Any) -> CellResult:
    """``run_cell`` in a fresh event loop, for callers that have none (the Dagster asset, the CLI)."""
    return asyncio.run(run_cell(rows, **kw))


class CellRun:
    """One run of one cell: the workers, the orphaned journaled tasks, and the closing flushes."""

    def __init__(
        self,
        cell: Cell,
        client: ProviderClient,
        *,
        budget: BudgetGuard | None,
        logger: Any,
        lease: HeldLease | None,
        on_progress: Callable[[ProgressSnapshot], None] | None = None,
    ) -> None:
        self.cell, self.client, self.budget, self.log, self.lease = cell, client, budget, logger, lease
        self.on_progress = on_progress
        self._told_lost = False
        self.report = CellReport(
            provider=cell.name,
            resolution=cell.resolution,
            partition_key=cell.run.partition_key,
            cost_unit=cell.price.unit,
            cost_is_estimate=cell.price.is_estimate,
            image_dir=cell.storage.uri(cell.storage.path("images", cell_dir(cell.name, cell.resolution))),
        )
        self.steps: PromptSteps  # made in run(), once the history is read

    async def run(self, rows: Iterable[PromptRow]) -> CellReport:
        started = time.monotonic()
        cell, s = self.cell, self.cell.settings
        history = await asyncio.to_thread(load_history, cell.storage, cell.name, cell.resolution)
        journal = Journal(cell.storage, cell.name, cell.resolution, cell.run.run_id)
        self.steps = steps = PromptSteps(
            cell=cell,
            client=self.client,
            history=history,
            report=self.report,
            books=Books(cell, history, self.report),
            journal=journal,
            references=ReferenceResolver(
                cell.traits, self.client, cell.storage, s.reference_roots, network=s.reference_network
            ),
            slots=slots_for(s, cell.traits, self.client),
            budget=self.budget,
            judge=CellJudge(
                s.usability_rules(), partial(earlier_paid_images, cell.storage, cell.name, cell.resolution)
            ),
            logger=self.log,
        )
        eligible = self._eligible(rows)
        progress = Progress(cell.run.partition_key, self.report, self.log.info, self._cost_so_far, self.on_progress)
        ticker = asyncio.ensure_future(progress.every(s.progress_interval_s))
        self.log.info(
            f"{cell.run.partition_key}: {self.report.eligible} eligible prompts; {history.past_rows} rows of "
            f"history ({history.past_source}); {len(history.unresolved)} journaled tasks to resume"
        )
        try:
            await self._work(eligible)
            await self._finish_orphans()
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await steps.books.flush()
            await journal.sync()
            await steps.references.aclose()
        self._close_report(time.monotonic() - started, journal)
        await asyncio.to_thread(progress.tell)
        if self._lease_lost():
            return self.report  # the cell's new holder does the upkeep
        done = await asyncio.to_thread(
            after_run,
            cell.storage,
            cell.name,
            cell.resolution,
            s,
            tail_parts=(history.past.tail_parts if history.past else 0) + len(steps.books.writer.parts),
            wrote_journal=journal.segments > 0 or self.report.resumed > 0,
        )
        if done:
            self.log.info(f"{cell.run.partition_key}: {done}")
        return self.report

    def _eligible(self, rows: Iterable[PromptRow]) -> Iterable[PromptRow]:
        if isinstance(rows, CellRows):  # filtered already, and turned into PromptRows only as workers take them
            self.report.eligible = len(rows)
            return rows
        eligible = [r for r in rows if r.eligible_for(self.cell.name, self.cell.resolution)]
        self.report.eligible = len(eligible)
        return eligible

    async def _work(self, eligible: Iterable[PromptRow]) -> None:
        queue: Iterator[PromptRow] = iter(eligible)
        # a few more workers than provider slots: a task's download and store then overlap the next
        # submit instead of keeping a slot the provider has already freed
        n = self.cell.settings.held_cap()
        workers = n + max(1, n // 4)

        async def worker() -> None:
            for row in queue:
                if self._lease_lost():
                    return
                await self.steps.handle(row)

        await asyncio.gather(*(worker() for _ in range(workers)))

    async def _finish_orphans(self) -> None:
        """Tasks journaled by earlier runs whose rows are gone from the table: still paid, still finished."""
        history = self.steps.history
        orphans, history.unresolved = list(history.unresolved.items()), {}
        for fp, entry in orphans:
            if self._lease_lost():
                return  # the cell's new holder resumes them from the journal
            intent = history.intents.get(fp)
            if intent is None or intent.row is None or intent.request is None:
                self.log.warning("journaled task %s has no intent; cannot record it against a prompt", entry.task_id)
                continue
            row = PromptRow.model_validate(intent.row)
            attempt = self.steps.new_attempt(row, GenerationRequest.model_validate(intent.request))
            self.report.eligible += 1
            try:
                await self.steps.resume(attempt, entry)
            except Exception as exc:  # noqa: BLE001 - recorded against the orphan's prompt
                await self.steps.on_bug(attempt, exc)

    def _lease_lost(self) -> bool:
        """Another run may hold the cell now: take no new prompt (those taken are finished and booked)."""
        reason = self.lease.lost if self.lease is not None else None
        if reason is not None and not self._told_lost:
            self._told_lost = True
            self.report.stop_reason = self.report.stop_reason or f"lease lost: {reason}"
            self.log.error(f"{self.cell.run.partition_key}: LEASE LOST ({reason}); submitting no new prompts")
        return reason is not None

    def _close_report(self, wall_s: float, journal: Journal) -> None:
        rep = self.report
        rep.wall_s = wall_s
        rep.ledger_parts = len(self.steps.books.writer.parts)
        rep.journal_segments = journal.segments
        rep.references_uploaded = self.steps.references.uploaded
        rep.references_reused = self.steps.references.reused
        rep.client_counters = dict(self.client.counters)
        window = self.steps.slots.window_ms
        if window:
            rep.submit_window_ms_max = round(max(window), 3)

    def _cost_so_far(self) -> str:
        est = " (est.)" if self.report.cost_is_estimate else ""
        return f"{self.report.final_cost.normalize():f} {self.report.cost_unit}{est}"

    async def ask_provider(self) -> ProviderCharges:
        """The provider's word on (a sample of) the tasks this run booked, for the reconcile check."""
        task_ids = self.steps.books.sample.ids
        return await ask_provider(self.client, self.cell.traits.billing, self.cell.price.per_image, task_ids)
