"""Running one (provider, resolution) cell: every eligible prompt ends with one valid image, or a reason.

Order of events for one prompt, and why:
1. fingerprint the request (references by content hash) and skip it if an earlier run already stored
   a valid image for it: re-running a cell pays only for gaps;
2. reserve its price in the budget guard, which refuses *before* a limit would be passed;
3. journal the intent, submit, journal the task id (OdiRouter: made durable at once, because it has no
   idempotency key and a crash in that window could pay twice);
4. wait for a terminal state, stream the image to local scratch, check format and pixel size, copy it
   into storage with lineage embedded, atomically (a bad image is kept in quarantine, not dropped: it
   was paid for);
5. write the ledger row, with the net amount this row charged.
Tasks journaled by a crashed run are polled again, never resubmitted. Nothing here knows Dagster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from nbpro_pipeline.costs.budget import BudgetGuard
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.engine.progress import Progress
from nbpro_pipeline.engine.references import ReferenceProblem, ReferenceResolver
from nbpro_pipeline.engine.report import CellReport, StoredImage
from nbpro_pipeline.engine.rows import CellRows
from nbpro_pipeline.engine.settings import EngineSettings, RunInfo
from nbpro_pipeline.image_files import ImageProblem, check_image, copy_with_lineage, inspect_image
from nbpro_pipeline.models.common import RIVYA_MODEL_ID, OutputFormat, Provider, Resolution, TaskState
from nbpro_pipeline.models.ledger import COST_UNIT, LedgerRecord, OutcomeStatus
from nbpro_pipeline.models.prompt import PromptRow
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.providers.base import DownloadedImage, ProviderClient, SubmittedTask, TaskSnapshot
from nbpro_pipeline.providers.errors import (
    AuthError,
    DeadlineExceededError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidRequestError,
    ProviderError,
    SubmitOutcomeUnknown,
)
from nbpro_pipeline.providers.rivya import idempotency_key_for
from nbpro_pipeline.storage.filesystem import Storage, cell_dir
from nbpro_pipeline.storage.journal import Journal, JournalEntry, read_journal
from nbpro_pipeline.storage.ledger import LedgerWriter, read_ledger

log = logging.getLogger(__name__)

# A row failed with one of these still has a live (or paid, undownloaded) task: the next run polls
# that task again instead of submitting a new one. ``internal_error`` counts only on a row with a task
# id: an unexpected exception after the submit leaves a task the provider made (and may have billed).
RESUMABLE_CODES = frozenset({"download_failed", "deadline_exceeded", "poll_failed", "internal_error"})
ODIROUTER_MODEL = "fal-ai/nano-banana-pro"  # what OdiRouter's endpoint nano_banana_pro serves
_MAX_MESSAGE = 500
_STOP_CODES = ("insufficient_funds", "auth_failed", "budget_exceeded")


def charged_for(snap: TaskSnapshot, price: Decimal) -> Decimal:
    """What the provider has charged for a task in total: Rivya reports credits per task (reserved until
    it settles); OdiRouter reports nothing, so its price table applies to completed tasks."""
    if snap.provider is Provider.RIVYA:
        if snap.credits_final is not None:
            return Decimal(snap.credits_final)
        return Decimal(snap.credits_reserved if snap.credits_reserved is not None else price)
    if snap.billed is not None:  # the provider's own answer (a cancelled task that had started)
        return price if snap.billed else Decimal(0)
    return price if snap.state is TaskState.SUCCEEDED else Decimal(0)


def _now() -> datetime:
    return datetime.now(UTC)


class CellRunner:
    def __init__(
        self,
        *,
        provider: Provider,
        resolution: Resolution,
        client: ProviderClient,
        storage: Storage,
        run: RunInfo,
        settings: EngineSettings | None = None,
        prices: PriceTable | None = None,
        budget: BudgetGuard | None = None,
        logger: Any = None,
    ) -> None:
        if client.provider is not provider:
            raise ValueError(f"a {client.provider.value} client cannot run a {provider.value} cell")
        self.provider = provider
        self.resolution = resolution
        self.client = client
        self.storage = storage
        self.run_info = run
        self.settings = settings or EngineSettings()
        self.prices = prices or PriceTable()
        self.budget = budget
        self.log = logger or log
        self.price = self.prices.per_image(provider, resolution)
        self.report = CellReport(
            provider=provider,
            resolution=resolution,
            partition_key=run.partition_key,
            cost_unit=COST_UNIT[provider],
            cost_is_estimate=self.prices.is_estimate(provider),
            image_dir=storage.uri(storage.path("images", cell_dir(provider, resolution))),
        )
        self.ledger = LedgerWriter(
            storage,
            provider,
            resolution,
            run.run_id,
            flush_rows=self.settings.ledger_flush_rows,
            flush_interval_s=self.settings.ledger_flush_interval_s,
        )
        self.journal = Journal(storage, provider, resolution, run.run_id)
        self.references = ReferenceResolver(provider, client, storage, self.settings.reference_roots)
        self._seen: set[str] = set()
        self._in_hand: dict[int, tuple[GenerationRequest, str]] = {}  # id(row) -> its request, while handled
        self._stage: dict[int, dict[str, Any]] = {}  # id(row) -> its task so far / whether recorded, while handled
        self.eligible_fingerprints: dict[str, str] = {}  # fingerprint -> prompt id, for the accounting check
        self._stop: tuple[str, str] | None = None  # (code, message) once submitting must stop
        self._window_ms: list[float] = []
        # without an idempotency key, every submit between "sent" and "task id durable" is one a crash can
        # buy twice: bound how many can be in that window at once
        self._submit_gate = asyncio.Semaphore(self.settings.max_unjournaled_submits)
        self._slots = asyncio.Semaphore(self.settings.max_in_flight)  # tasks submitted and not yet terminal
        self._holding: set[int] = set()  # rows (by id) holding a slot

    # -- what earlier runs left ---------------------------------------------------------------------
    def _load_history(self) -> None:
        cols = ["fingerprint", "status", "task_id", "error_code", "final_cost", "image_uri", "recorded_at"]
        prev = read_ledger(self.storage, provider=self.provider, resolution=self.resolution, columns=cols)
        image_dir = self.storage.path("images", cell_dir(self.provider, self.resolution))
        stored = {self.storage.uri(p) for p in self.storage.find(image_dir)}
        self.succeeded: set[str] = set()
        self.charged_by_task: dict[str, Decimal] = {}
        self.failed_generations: dict[str, set[str]] = {}
        latest_code: dict[str, str | None] = {}
        prev = prev.sort_by([("recorded_at", "ascending")])
        for r in prev.to_pylist():
            fp, task = r["fingerprint"], r["task_id"]
            if r["status"] == OutcomeStatus.SUCCEEDED and r["image_uri"] in stored:
                self.succeeded.add(fp)
            if task:
                self.charged_by_task[task] = self.charged_by_task.get(task, Decimal(0)) + (r["final_cost"] or 0)
                latest_code[task] = r["error_code"]
                if r["status"] == OutcomeStatus.FAILED:
                    self.failed_generations.setdefault(fp, set()).add(task)
        resolved = {t for t, code in latest_code.items() if code not in RESUMABLE_CODES}
        for tasks in self.failed_generations.values():
            tasks.difference_update([t for t in tasks if latest_code.get(t) in RESUMABLE_CODES])
        state = read_journal(self.storage, self.provider, self.resolution)
        self.intents = state.intents
        self.unresolved: dict[str, JournalEntry] = state.unresolved_tasks(resolved)

    def _idempotency_key(self, fingerprint: str) -> str | None:
        """Same fingerprint, same key: a resubmit after a crash replays the original Rivya task for free.
        After a terminal failure a new attempt needs a new key, else Rivya would replay the failure."""
        if self.provider is not Provider.RIVYA:
            return None
        generation = len(self.failed_generations.get(fingerprint, ()))
        return idempotency_key_for(fingerprint if generation == 0 else f"{fingerprint}#retry{generation}")

    # -- the run --------------------------------------------------------------------------------------
    async def run(self, rows: Iterable[PromptRow]) -> CellReport:
        started = time.monotonic()
        await asyncio.to_thread(self._load_history)
        if isinstance(rows, CellRows):  # filtered already, and turned into PromptRows only as workers take them
            eligible: Iterable[PromptRow] = rows
            self.report.eligible = len(rows)
        else:
            eligible = [r for r in rows if r.eligible_for(self.provider, self.resolution)]
            self.report.eligible = len(eligible)
        progress = Progress(self.run_info.partition_key, self.report.eligible, self._emit, self._cost_so_far)
        self.progress = progress
        ticker = asyncio.ensure_future(progress.every(self.settings.progress_interval_s))
        self._emit(
            f"{self.run_info.partition_key}: {self.report.eligible} eligible prompts; "
            f"{len(self.succeeded)} fingerprints already stored; {len(self.unresolved)} journaled tasks to resume"
        )
        try:
            queue: Iterator[PromptRow] = iter(eligible)
            # a few more workers than provider slots: a task's download and store then overlap the next
            # submit instead of keeping a slot the provider has already freed
            extra = max(1, self.settings.max_in_flight // 4)
            workers = [asyncio.ensure_future(self._worker(queue)) for _ in range(self.settings.max_in_flight + extra)]
            await asyncio.gather(*workers)
            # tasks journaled by earlier runs whose rows are gone from the table: still paid, still finished
            orphans = list(self.unresolved.items())
            self.unresolved.clear()
            for fp, entry in orphans:
                await self._guard(self._resume_orphan(fp, entry))
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            self.ledger.flush()
            await self.journal.sync()
            await self.references.aclose()
        self.report.wall_s = time.monotonic() - started
        self.report.ledger_parts = len(self.ledger.parts)
        self.report.journal_segments = self.journal.segments
        self.report.client_counters = dict(getattr(self.client, "counters", {}))
        if self._window_ms:
            self.report.odirouter_submit_window_ms_max = round(max(self._window_ms), 3)
        self._emit(progress.line())
        return self.report

    def _emit(self, message: str) -> None:
        self.log.info(message)

    def _cost_so_far(self) -> str:
        est = " (est.)" if self.report.cost_is_estimate else ""
        return f"{self.report.final_cost.normalize():f} {self.report.cost_unit}{est}"

    async def _worker(self, queue: Iterator[PromptRow]) -> None:
        for row in queue:
            await self._guard(self._handle(row), row)

    async def _guard(self, work, row: PromptRow | None = None) -> None:
        """One prompt's failure, even a bug, is recorded against that prompt and never stops the cell."""
        try:
            await work
        except Exception as exc:  # noqa: BLE001 - anything unexpected becomes a failed ledger row
            self.log.exception("unexpected error on %s", row.prompt_id if row else "a resumed task")
            stage = self._stage.get(id(row), {}) if row is not None else {}
            if row is not None and not stage.get("recorded"):  # one outcome per row, never a second one
                # the request as fingerprinted (references by content hash), when it got that far
                request, fp = self._in_hand.get(id(row)) or (self._request(row, ()), "")
                fp = fp or request.fingerprint(self.provider)
                self.eligible_fingerprints.setdefault(fp, row.prompt_id)
                self._record(
                    row,
                    request,
                    fp,
                    OutcomeStatus.FAILED,
                    error_code="internal_error",
                    error_message=f"{type(exc).__name__}: {exc}",
                    **self._task_so_far(stage),
                )
        finally:
            if row is not None:
                self._in_hand.pop(id(row), None)
                self._stage.pop(id(row), None)

    def _task_so_far(self, stage: dict[str, Any]) -> dict[str, Any]:
        """After a submit, an unexpected failure is recorded against the task with what it holds (Rivya
        reserves at create; a finished task is charged), so the ledger matches the provider at once and
        the next run resumes that task (``internal_error`` with a task id is resumable)."""
        if "task" not in stage:
            return {}
        snap: TaskSnapshot | None = stage.get("snap")
        if snap is not None:
            charged = self._charged(snap)
        else:
            charged = self.price if self.provider is Provider.RIVYA else Decimal(0)
        return {**stage["task"], "charged": charged, "snap": snap}

    def _note_stage(self, row: PromptRow, **facts: Any) -> None:
        if id(row) in self._in_hand:  # rows handled by a worker only (the guard clears it)
            self._stage.setdefault(id(row), {}).update(facts)

    # -- one prompt -----------------------------------------------------------------------------------
    def _request(self, row: PromptRow, refs) -> GenerationRequest:
        return GenerationRequest(
            prompt=row.prompt,
            aspect_ratio=row.aspect_ratio,
            resolution=self.resolution,
            output_format=row.output_format,
            references=refs,
        )

    async def _handle(self, row: PromptRow) -> None:
        try:
            refs = await self.references.for_fingerprint(row.reference_images, row.source_uri)
        except ReferenceProblem as exc:
            request = self._request(row, ())
            fp = request.fingerprint(self.provider)
            self._record(
                row, request, fp, OutcomeStatus.FAILED, error_code="reference_unreadable", error_message=str(exc)
            )
            return
        request = self._request(row, refs)
        fp = request.fingerprint(self.provider)
        self._in_hand[id(row)] = (request, fp)
        if fp in self.succeeded or fp in self._seen:
            self.eligible_fingerprints.setdefault(fp, row.prompt_id)
            self.report.already_done += 1
            self.progress.done += 1
            return
        self._seen.add(fp)
        self.eligible_fingerprints[fp] = row.prompt_id
        if fp in self.unresolved:
            entry = self.unresolved.pop(fp)
            self.report.resumed += 1
            record = await self._finish(row, request, fp, entry.task_id, entry.idempotency_key, entry.at, 0, None)
            if self.budget is not None:
                self.budget.settle(Decimal(0), record.final_cost)
            return
        if self._stop is not None:
            code, message = self._stop
            self._record(row, request, fp, OutcomeStatus.SKIPPED, error_code=code, error_message=message)
            return
        reserved = self.price
        if self.budget is not None and not self.budget.try_reserve(reserved):
            self._record(
                row,
                request,
                fp,
                OutcomeStatus.SKIPPED,
                error_code="budget_exceeded",
                error_message=self.budget.exhausted_reason or "the budget is spent",
            )
            return
        actual = Decimal(0)
        try:
            record = await self._submit_and_finish(row, request, fp)
            actual = record.final_cost
        finally:
            if self.budget is not None:
                self.budget.settle(reserved, actual)

    async def _resume_orphan(self, fp: str, entry: JournalEntry) -> None:
        intent = self.intents.get(fp)
        if intent is None or intent.row is None or intent.request is None:
            self.log.warning("journaled task %s has no intent; cannot record it against a prompt", entry.task_id)
            return
        row = PromptRow.model_validate(intent.row)
        request = GenerationRequest.model_validate(intent.request)
        self.report.resumed += 1
        self.report.eligible += 1
        self.progress.total += 1
        await self._finish(row, request, fp, entry.task_id, entry.idempotency_key, entry.at, 0, None)

    async def _submit_and_finish(self, row: PromptRow, request: GenerationRequest, fp: str) -> LedgerRecord:
        if request.references:
            try:
                uploaded = await self.references.uploaded_refs(request.references)
                request = request.model_copy(update={"references": uploaded})
            except ReferenceProblem as exc:
                return self._record(
                    row, request, fp, OutcomeStatus.FAILED, error_code="reference_unreadable", error_message=str(exc)
                )
        await self._slots.acquire()
        try:
            return await self._submit_in_slot(row, request, fp)
        finally:
            self._release_slot(row)

    def _release_slot(self, row: PromptRow) -> None:
        if id(row) in self._holding:
            self._holding.discard(id(row))
            self._slots.release()

    async def _submit_in_slot(self, row: PromptRow, request: GenerationRequest, fp: str) -> LedgerRecord:
        """Submit and see the task through; the provider slot (one of ``max_in_flight``) is given back as
        soon as the task is terminal, before its image is downloaded and stored."""
        self._holding.add(id(row))
        key = self._idempotency_key(fp)
        self.journal.add(
            "intent", fp, idempotency_key=key, row=row.model_dump(mode="json"), request=request.model_dump(mode="json")
        )
        await self.journal.sync()
        fail = OutcomeStatus.FAILED
        try:
            submitted = await self._submit_durably(request, fp, key)
        except SubmitOutcomeUnknown as exc:
            self.journal.add("unknown", fp)
            return self._record(
                row, request, fp, fail, error_code="submit_outcome_unknown", error_message=str(exc), key=key
            )
        except InsufficientFundsError as exc:
            self._stop = ("insufficient_funds", f"stopped after the provider reported too few credits: {exc}")
            return self._record(
                row,
                request,
                fp,
                OutcomeStatus.SKIPPED,
                error_code="insufficient_funds",
                error_message=str(exc),
                key=key,
            )
        except AuthError as exc:
            self._stop = ("auth_failed", f"stopped after the provider refused the API key: {exc}")
            return self._record(
                row, request, fp, OutcomeStatus.SKIPPED, error_code="auth_failed", error_message=str(exc), key=key
            )
        except IdempotencyConflictError as exc:
            return self._record(
                row, request, fp, fail, error_code="idempotency_conflict", error_message=str(exc), key=key
            )
        except InvalidRequestError as exc:
            return self._record(row, request, fp, fail, error_code="invalid_request", error_message=str(exc), key=key)
        except ProviderError as exc:
            return self._record(row, request, fp, fail, error_code="provider_error", error_message=str(exc), key=key)
        self.report.submitted += 1
        return await self._finish(
            row, request, fp, submitted.task_id, key, submitted.submitted_at, submitted.attempts, submitted.snapshot
        )

    async def _submit_durably(self, request: GenerationRequest, fp: str, key: str | None) -> SubmittedTask:
        """Submit and journal the task id. OdiRouter has no idempotency key, so the id is made durable at
        once, and at most ``max_unjournaled_submits`` submits are between "sent" and "durable" at a time:
        a crash can then buy at most that many requests twice, however many tasks are in flight."""
        if self.provider is not Provider.ODIROUTER:
            submitted = await self.client.submit(request, idempotency_key=key)
            self.journal.add("task", fp, task_id=submitted.task_id, idempotency_key=key)
            return submitted
        async with self._submit_gate:
            sent = time.monotonic()
            submitted = await self.client.submit(request, idempotency_key=key)
            self.journal.add("task", fp, task_id=submitted.task_id, idempotency_key=key)
            await self.journal.sync()
            self._window_ms.append((time.monotonic() - sent) * 1000)
        return submitted

    async def _finish(
        self,
        row: PromptRow,
        request: GenerationRequest,
        fp: str,
        task_id: str,
        key: str | None,
        submitted_at: datetime,
        attempts: int,
        first: TaskSnapshot | None,
    ) -> LedgerRecord:
        common = {"task_id": task_id, "key": key, "submitted_at": submitted_at, "attempts": attempts}
        self._note_stage(row, task=common)
        try:
            if first is not None and first.state.terminal:
                snap = first
            else:
                snap = await self.client.wait(task_id, deadline_s=self.settings.task_deadline_s)
            self._release_slot(row)
        except DeadlineExceededError as exc:
            running = exc.last_state == TaskState.RUNNING.value
            if self.provider is Provider.RIVYA:  # no cancel on Rivya: the task lives on, resumable
                return self._record(
                    row,
                    request,
                    fp,
                    OutcomeStatus.FAILED,
                    error_code="deadline_exceeded",
                    error_message=str(exc),
                    charged=self.price,
                    **common,
                )
            cancelled = exc.cancel_status is not None
            # the status read after the cancel decides; the last poll before it is only a fallback
            billed = exc.billed if exc.billed is not None else (running and cancelled)
            return self._record(
                row,
                request,
                fp,
                OutcomeStatus.FAILED,
                error_code="deadline_cancelled" if cancelled else "deadline_exceeded",
                error_message=str(exc),
                charged=self.price if billed else Decimal(0),
                **common,
            )
        except ProviderError as exc:
            # Rivya holds a reservation; on OdiRouter nothing new is known, so what earlier rows of a
            # resumed task already hold stays (0 would write a refund the provider never made)
            charged = self.price if self.provider is Provider.RIVYA else self.charged_by_task.get(task_id, Decimal(0))
            return self._record(
                row,
                request,
                fp,
                OutcomeStatus.FAILED,
                error_code="poll_failed",
                error_message=str(exc),
                charged=charged,
                **common,
            )
        charged = self._charged(snap)
        self._note_stage(row, snap=snap)
        if snap.state is TaskState.FAILED:
            code = snap.error_code or "generation_failed"
            return self._record(
                row,
                request,
                fp,
                OutcomeStatus.FAILED,
                error_code=code,
                error_message=snap.error_message,
                charged=charged,
                snap=snap,
                **common,
            )
        return await self._store(row, request, fp, snap, charged, common)

    def _charged(self, snap: TaskSnapshot) -> Decimal:
        return charged_for(snap, self.price)

    async def _store(self, row, request, fp, snap: TaskSnapshot, charged: Decimal, common: dict) -> LedgerRecord:
        fd, scratch = tempfile.mkstemp(prefix="dl-", suffix=".part", dir=self.storage.scratch_dir())
        try:
            with os.fdopen(fd, "w+b") as fh:
                try:
                    downloaded = await self.client.fetch_result(snap, fh)
                except ProviderError as exc:
                    return self._record(
                        row,
                        request,
                        fp,
                        OutcomeStatus.FAILED,
                        error_code="download_failed",
                        error_message=str(exc),
                        charged=charged,
                        snap=snap,
                        **common,
                    )
            stored = await asyncio.to_thread(self._validate_and_place, scratch, row, request, fp, snap, downloaded)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(scratch)
        status, code, message, info = stored
        record = self._record(
            row,
            request,
            fp,
            status,
            error_code=code,
            error_message=message,
            charged=charged,
            snap=snap,
            downloaded=downloaded,
            image=info,
            **common,
        )
        if status is OutcomeStatus.SUCCEEDED and len(self.report.images) < self.settings.thumbnails:
            self.report.images.append(
                StoredImage(
                    prompt_id=row.prompt_id,
                    uri=info["uri"],
                    width=info["width"],
                    height=info["height"],
                    bytes=info["bytes"],
                )
            )
        return record

    def _validate_and_place(self, scratch, row, request, fp, snap, downloaded: DownloadedImage):
        """Check the image, then copy it into storage with lineage: good ones under images/, bad ones
        under quarantine/ (paid for, so kept, but never mistaken for a success)."""
        status, code, message = OutcomeStatus.SUCCEEDED, None, None
        fmt, width, height = request.output_format, None, None
        try:
            info = inspect_image(scratch)
            fmt, width, height = info.format, info.width, info.height
            check_image(info, request.output_format, request.aspect_ratio, self.resolution)
        except ImageProblem as exc:
            status, code, message = OutcomeStatus.FAILED, exc.code, exc.message
        ext = "png" if fmt is OutputFormat.PNG else "jpg"
        place = self.storage.image_path if status is OutcomeStatus.SUCCEEDED else self.storage.quarantine_path
        path = place(self.provider, self.resolution, row.prompt_id, fp, ext)
        lineage = self._lineage(row, request, fp, snap, downloaded)
        try:
            with open(scratch, "rb") as src, self.storage.open_atomic(path) as dst:
                sha, size = copy_with_lineage(src, dst, fmt, lineage, self.settings.signer)
        except ImageProblem:  # too broken to annotate: keep the bytes as they came
            self.storage.put_file(scratch, path)
            sha, size = downloaded.sha256, downloaded.bytes
        return (
            status,
            code,
            message,
            {"uri": self.storage.uri(path), "sha256": sha, "bytes": size, "width": width, "height": height},
        )

    def _lineage(
        self, row: PromptRow, request: GenerationRequest, fp: str, snap: TaskSnapshot, downloaded: DownloadedImage
    ) -> dict[str, Any]:
        return {
            "prompt_id": row.prompt_id,
            "prompt_sha256": row.prompt_sha256,
            "prompt": row.prompt[:2000],
            "source_uri": row.source_uri,
            "source_sha256": row.source_sha256,
            "row_number": row.row_number,
            "provider": self.provider.value,
            "model": self._model(),
            "task_id": snap.task_id,
            "params": self._params(request),
            "fingerprint": fp,
            "provider_sha256": downloaded.sha256,
            "cost": str(self._charged(snap)),
            "cost_unit": COST_UNIT[self.provider],
            "run_id": self.run_info.run_id,
            "partition_key": self.run_info.partition_key,
            "pipeline_version": self.run_info.pipeline_version,
            "created_at": _now().isoformat(),
        }

    def _model(self) -> str:
        return RIVYA_MODEL_ID if self.provider is Provider.RIVYA else ODIROUTER_MODEL

    def _params(self, request: GenerationRequest) -> dict[str, Any]:
        return {
            "aspect_ratio": request.aspect_ratio.value,
            "resolution": request.resolution.value,
            "output_format": request.output_format.value,
            "references": [r.sha256 or r.url for r in request.references],
        }

    # -- the ledger row -------------------------------------------------------------------------------
    def _record(
        self,
        row: PromptRow,
        request: GenerationRequest,
        fp: str,
        status: OutcomeStatus,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        task_id: str | None = None,
        key: str | None = None,
        charged: Decimal = Decimal(0),
        snap: TaskSnapshot | None = None,
        downloaded: DownloadedImage | None = None,
        image: dict[str, Any] | None = None,
        submitted_at: datetime | None = None,
        attempts: int = 0,
    ) -> LedgerRecord:
        # net of what earlier ledger rows of the same task already hold (a resumed task is not paid twice)
        net = charged
        if task_id is not None:
            net = charged - self.charged_by_task.get(task_id, Decimal(0))
            self.charged_by_task[task_id] = charged
        finished = _now()
        record = LedgerRecord(
            prompt_id=row.prompt_id,
            prompt_sha256=row.prompt_sha256,
            source_uri=row.source_uri,
            source_sha256=row.source_sha256,
            row_number=row.row_number,
            provider=self.provider,
            resolution=self.resolution,
            aspect_ratio=request.aspect_ratio.value,
            output_format=request.output_format.value,
            model_requested=self._model(),
            params=json.dumps(self._params(request), sort_keys=True),
            fingerprint=fp,
            idempotency_key=key,
            task_id=task_id,
            status=status,
            error_code=error_code,
            error_message=(error_message or "")[:_MAX_MESSAGE] or None,
            credits_reserved=snap.credits_reserved if snap else None,
            credits_final=snap.credits_final if snap else None,
            final_cost=net,
            cost_unit=COST_UNIT[self.provider],
            cost_is_estimate=self.prices.is_estimate(self.provider),
            estimated_usd=self.prices.to_usd(self.provider, net),
            submitted_at=submitted_at,
            finished_at=finished,
            latency_s=(finished - submitted_at).total_seconds() if submitted_at else None,
            attempts=attempts + (downloaded.attempts if downloaded else 0),
            polls=snap.polls if snap else 0,
            image_uri=image["uri"] if image else None,
            image_sha256=image["sha256"] if image else None,
            provider_sha256=downloaded.sha256 if downloaded else None,
            width=image["width"] if image else None,
            height=image["height"] if image else None,
            bytes=image["bytes"] if image else None,
            run_id=self.run_info.run_id,
            partition_key=self.run_info.partition_key,
            pipeline_version=self.run_info.pipeline_version,
            recorded_at=finished,
        )
        self.ledger.add(record)
        self._note_stage(row, recorded=True)
        self._count(record, snap)
        return record

    def _count(self, record: LedgerRecord, snap: TaskSnapshot | None) -> None:
        rep = self.report
        rep.final_cost += record.final_cost
        rep.estimated_usd += record.estimated_usd or Decimal(0)
        rep.credits_reserved += record.credits_reserved or 0
        rep.polls += record.polls
        if record.status is OutcomeStatus.SUCCEEDED:
            rep.succeeded += 1
            self.progress.ok += 1
        elif record.status is OutcomeStatus.FAILED:
            rep.failed += 1
            self.progress.failed += 1
            rep.count_failure(record.error_code or "unknown")
        else:
            rep.skipped += 1
            rep.count_failure(record.error_code or "skipped")
            if rep.stop_reason is None and record.error_code in _STOP_CODES:
                rep.stop_reason = record.error_message
        self.progress.done += 1
