"""One prompt's life, as small steps over its ``Attempt``:

1. fingerprint the request (references by content hash) and skip it if an earlier run already stored
   a valid image for it: re-running a cell pays only for gaps;
2. reserve its price in the budget guard, which refuses *before* a limit would be passed;
3. journal the intent, submit, journal the task id (made durable at once where submits are not
   idempotent, because a crash in that window could pay twice);
4. wait for a terminal state, stream the image to local scratch, check it and place it in storage;
5. book the ledger row, with the net amount this row charged.
A task journaled by a crashed run is polled again (``resume``), never resubmitted. Every exception
becomes an outcome through ``outcomes.OUTCOME_TABLE``; none stops the cell.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from nbpro_pipeline.costs.budget import BudgetGuard
from nbpro_pipeline.engine.attempt import Attempt, TaskRef
from nbpro_pipeline.engine.booking import Books
from nbpro_pipeline.engine.context import Cell
from nbpro_pipeline.engine.fingerprints import EligibleLog, FingerprintSet
from nbpro_pipeline.engine.history import CellHistory
from nbpro_pipeline.engine.outcomes import Charging, Outcome, outcome_for_error, outcome_for_snapshot, stop_message
from nbpro_pipeline.engine.placing import Judging, place_draft, place_image, quarantine_body
from nbpro_pipeline.engine.references import ReferenceProblem, ReferenceResolver
from nbpro_pipeline.engine.report import CellReport
from nbpro_pipeline.engine.slots import ProviderSlots
from nbpro_pipeline.models.ledger import DraftImage, LedgerRecord, OutcomeStatus
from nbpro_pipeline.models.prompt import PromptRow
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.models.task import TaskUrls
from nbpro_pipeline.providers.base import ProviderClient, TaskSnapshot, idempotency_key
from nbpro_pipeline.providers.errors import (
    ProviderError,
    RateLimitedError,
    SubmitOutcomeUnknown,
    UnreadableResultError,
)
from nbpro_pipeline.providers.reading import final_image
from nbpro_pipeline.storage.journal import Journal, JournalEntry
from nbpro_pipeline.usability import ImageSignals
from nbpro_pipeline.usability.judge import CellJudge, Judgement

# A download up to this size stays in memory until stored (64 in flight hold at most 32 MiB so); a
# bigger one rolls over to an anonymous file in the storage's scratch directory.
SPOOL_BYTES = 512 * 1024

log = logging.getLogger(__name__)


@dataclass
class PromptSteps:
    cell: Cell
    client: ProviderClient
    history: CellHistory
    report: CellReport
    books: Books
    journal: Journal
    references: ReferenceResolver
    slots: ProviderSlots
    budget: BudgetGuard | None = None
    judge: CellJudge | None = None  # the usability verdict on each stored image (None: not judged)
    logger: Any = log
    eligible: EligibleLog = field(default_factory=EligibleLog)  # every eligible row, for the accounting check
    seen: FingerprintSet = field(default_factory=FingerprintSet)  # fingerprints decided: a duplicate is not paid
    stop: Outcome | None = None  # once set, nothing more is submitted

    # -- the whole of one prompt --------------------------------------------------------------------
    async def handle(self, row: PromptRow) -> None:
        """One prompt's failure, even a bug, is recorded against that prompt and never stops the cell."""
        attempt = self.new_attempt(row, request_for(row, self.cell, ()))
        try:
            if await self.fingerprint(attempt):
                await self.settle(attempt)
        except Exception as exc:  # noqa: BLE001 - anything unexpected becomes a failed ledger row
            await self.on_bug(attempt, exc)
        finally:
            self.slots.release(attempt)
            if attempt.claimed:  # its row is booked: nothing asks about its fingerprint again
                self.history.forget(attempt.fingerprint, attempt.task.task_id if attempt.task else None)

    def new_attempt(self, row: PromptRow, request: GenerationRequest) -> Attempt:
        return Attempt(row=row, request=request, fingerprint=request.fingerprint(self.cell.name))

    async def fingerprint(self, attempt: Attempt) -> bool:
        """Resolve the references (by content hash) into the request and its fingerprint."""
        row = attempt.row
        if not row.reference_images:  # the request as made is the one to fingerprint
            return True
        try:
            refs = await self.references.for_fingerprint(row.reference_images, row.source_uri, row.row_number)
        except ReferenceProblem as exc:
            self.eligible.note(attempt.fingerprint, row.prompt_id)
            await self.books.book(attempt, Outcome(OutcomeStatus.FAILED, "reference_unreadable", str(exc)))
            return False
        attempt.request = request_for(row, self.cell, refs)
        attempt.fingerprint = attempt.request.fingerprint(self.cell.name)
        return True

    async def settle(self, attempt: Attempt) -> None:
        fp, pid = attempt.fingerprint, attempt.row.prompt_id
        seen = fp in self.seen
        if not seen:
            await self.history.ensure(fp)  # its bucket of the index, before anything is asked about it
            seen = fp in self.seen  # another row of it may have been decided meanwhile
        if seen or self.history.is_stored(fp):
            self.eligible.note(fp, pid)
            self.report.already_done += 1
            if not seen:  # stored by an earlier run: a duplicate row is then done without asking again
                self.seen.add(fp)
                self.history.forget(fp)
            return
        self.seen.add(fp)
        self.eligible.claim(fp, pid)
        attempt.claimed = True
        if fp in self.history.unresolved:
            await self.resume(attempt, self.history.unresolved.pop(fp))
        elif self.stop is not None:
            await self.books.book(attempt, Outcome(OutcomeStatus.SKIPPED, self.stop.code, stop_message(self.stop)))
        else:
            await self.within_budget(attempt)

    async def resume(self, attempt: Attempt, entry: JournalEntry) -> None:
        """A task an earlier run made: poll it again and finish it; never submit it anew."""
        assert entry.task_id is not None
        attempt.task = TaskRef(task_id=entry.task_id, submitted_at=entry.at, urls=entry.urls or TaskUrls())
        attempt.key, attempt.resumed = entry.idempotency_key, True
        self.report.resumed += 1
        record = await self.see_through(attempt)
        if self.budget is not None:
            self.budget.settle(Decimal(0), record.final_cost)

    async def within_budget(self, attempt: Attempt) -> None:
        reserved = self.cell.price.per_image
        if self.budget is not None and not self.budget.try_reserve(reserved):
            reason = self.budget.exhausted_reason or "the budget is spent"
            await self.books.book(attempt, Outcome(OutcomeStatus.SKIPPED, "budget_exceeded", reason))
            return
        actual = Decimal(0)
        try:
            actual = (await self.submit_and_see_through(attempt)).final_cost
        finally:
            if self.budget is not None:
                self.budget.settle(reserved, actual)

    # -- submitting ---------------------------------------------------------------------------------
    async def submit_and_see_through(self, attempt: Attempt) -> LedgerRecord:
        if attempt.request.references:
            try:
                uploaded = await self.references.uploaded_refs(attempt.request.references)
            except ReferenceProblem as exc:
                return await self.books.book(attempt, Outcome(OutcomeStatus.FAILED, "reference_unreadable", str(exc)))
            attempt.request = attempt.request.model_copy(update={"references": uploaded})
        await self.slots.acquire(attempt)
        await self.journal_intent(attempt)
        try:
            await self.submit_admitted(attempt)
        except ProviderError as exc:
            if isinstance(exc, SubmitOutcomeUnknown):
                self.journal.add("unknown", attempt.fingerprint)
            outcome = outcome_for_error(exc, "submit", attempt, self.cell.charging())
            if outcome.stops_submitting and self.stop is None:
                self.stop = outcome
            return await self.books.book(attempt, outcome)
        self.report.submitted += 1
        return await self.see_through(attempt)

    async def journal_intent(self, attempt: Attempt) -> None:
        """Durable before the submit: the next run can then finish what this one started."""
        if self.cell.traits.idempotent_submit:
            attempt.key = self.key_for(attempt.fingerprint)
        row, request = attempt.row.model_dump(mode="json"), attempt.request.model_dump(mode="json")
        self.journal.add("intent", attempt.fingerprint, idempotency_key=attempt.key, row=row, request=request)
        await self.journal.sync()

    def key_for(self, fingerprint: str) -> str:
        """A first attempt reuses the key of an intent journaled for it (a crash between sending the
        create and journaling its answer, possibly by a version whose keys were not yet namespaced):
        the provider then replays that task instead of selling it again. Otherwise, the namespaced key
        of this generation."""
        generation = self.history.generation(fingerprint)
        intent = self.history.intents.get(fingerprint)
        if generation == 0 and intent is not None and intent.idempotency_key:
            return intent.idempotency_key
        return idempotency_key(self.cell.ledger_id, fingerprint, generation)

    async def submit_admitted(self, attempt: Attempt) -> None:
        """Submit; a 429 to the create made nothing, so it is counted, the submit waits for room and goes
        again: never charged, never a failure, unless the provider refuses it for a whole ``task_deadline_s``."""
        started = time.monotonic()
        while True:
            try:
                await self.submit(attempt)
                return
            except RateLimitedError as exc:
                if time.monotonic() - started > self.cell.settings.task_deadline_s:
                    raise
                self.slots.rejected(attempt, exc)
                self.report.create_429 += 1
            await self.slots.acquire(attempt)

    async def submit(self, attempt: Attempt) -> None:
        """Submit and journal the task id; where submits are not idempotent, the id is made durable at
        once, inside the bounded window (``ProviderSlots.unjournaled_window``), whose rate-limit token
        is taken before it opens (``take_send_token``), so the window holds no token-bucket wait."""
        if self.slots.bounds_window:
            await self.client.take_send_token()
        async with self.slots.unjournaled_window():
            submitted = await self.client.submit(attempt.request, idempotency_key=attempt.key)
            self.journal.add(
                "task",
                attempt.fingerprint,
                task_id=submitted.task_id,
                idempotency_key=attempt.key,
                urls=submitted.urls if submitted.urls.any else None,
            )
            if not self.cell.traits.idempotent_submit:
                await self.journal.sync()
        attempt.task = TaskRef(
            task_id=submitted.task_id,
            submitted_at=submitted.submitted_at,
            attempts=submitted.attempts,
            replayed=submitted.replayed,
            urls=submitted.urls,
        )
        attempt.snapshot = submitted.snapshot
        self.slots.submitted(attempt, submitted.snapshot)
        if submitted.replayed:  # booked net of what this ledger already holds for the task: never twice
            self.report.replayed += 1

    # -- after the submit ---------------------------------------------------------------------------
    async def see_through(self, attempt: Attempt) -> LedgerRecord:
        """Wait for the task to end (its slot is given back then), then book or fetch its result."""
        try:
            snap = await self.wait_terminal(attempt)
        except ProviderError as exc:
            return await self.fail(attempt, exc, "wait")
        finally:
            self.slots.release(attempt)
        decided = outcome_for_snapshot(snap, self.charging(attempt))
        if decided is not None:
            return await self.books.book(attempt, decided)
        return await self.fetch_and_place(attempt)

    async def wait_terminal(self, attempt: Attempt) -> TaskSnapshot:
        assert attempt.task is not None
        first = attempt.snapshot
        if first is not None and first.state.terminal:
            return first
        try:
            snap = await self.client.wait(attempt.task.handle, deadline_s=self.cell.settings.task_deadline_s)
        except ProviderError as exc:
            attempt.polls += exc.polls
            raise
        attempt.polls += snap.polls
        attempt.snapshot = snap
        return snap

    async def fetch_and_place(self, attempt: Attempt) -> LedgerRecord:
        """Download the answer's final image (the provider's rule, else the last), place it, then keep the
        answer's other images as drafts; the task is booked once, on this row, whatever they are."""
        snap = attempt.snapshot
        assert snap is not None
        paid = Outcome.of(
            OutcomeStatus.SUCCEEDED, None, None, self.charging(attempt).billing.charge(snap, self.cell.price.per_image)
        )
        final = final_image(snap.images) if snap.images else None
        attempt.answer_images = len(snap.images) or None
        # small downloads stay in memory (creating a file costs ~0.3 ms of CPU); bigger ones roll over
        # to an anonymous file in scratch, removed on close
        scratch = self.cell.storage.scratch_dir()
        with tempfile.SpooledTemporaryFile(SPOOL_BYTES, prefix="dl-", suffix=".part", dir=scratch) as fh:
            try:
                attempt.download = await self.client.fetch_result(snap, fh, index=final)
            except ProviderError as exc:
                return await self.fail(attempt, exc, "fetch")
            outcome = await asyncio.to_thread(place_image, self.cell, attempt, fh, paid, self.judging(attempt))
        if final is not None and len(snap.images) > 1:
            await self.keep_drafts(attempt, final)
        return await self.books.book(attempt, outcome)

    def judging(self, attempt: Attempt) -> Judging | None:
        """The verdict on this attempt's stored image: the cell's judge, with the request's references."""
        judge = self.judge
        if judge is None:
            return None
        key, refs = attempt.task.task_id if attempt.task else "", attempt.request.references

        def verdict(signals: ImageSignals) -> Judgement:
            return judge.judge(key, signals, self.references.signals_of(refs))

        return verdict

    async def keep_drafts(self, attempt: Attempt, final: int) -> None:
        """Store the answer's images besides ``final`` (the ``max_images_per_answer - 1`` nearest it) as
        drafts. A draft that cannot be fetched or stored is logged and left: it never decides the row."""
        snap = attempt.snapshot
        assert snap is not None
        keep = self.cell.settings.max_images_per_answer - 1
        others = [i for i in range(len(snap.images)) if i != final][-keep:] if keep > 0 else []
        drafts: list[DraftImage] = []
        for n, index in enumerate(others, 1):
            try:
                with tempfile.SpooledTemporaryFile(SPOOL_BYTES, dir=self.cell.storage.scratch_dir()) as fh:
                    download = await self.client.fetch_result(snap, fh, index=index)
                    drafts.append(await asyncio.to_thread(place_draft, self.cell, attempt, fh, download, n))
            except Exception as exc:  # noqa: BLE001 - a draft is kept when it can be, and never decides the row
                self.logger.warning("%s: draft image %d of task %s not kept: %s", attempt.row.prompt_id, index,
                                    snap.task_id, exc)  # fmt: skip
        attempt.drafts = tuple(drafts)

    # -- failures -----------------------------------------------------------------------------------
    def charging(self, attempt: Attempt) -> Charging:
        """The billing facts for ``attempt``, with what earlier ledger rows already hold for its task."""
        return self.cell.charging(self.history.earlier(attempt.task.task_id if attempt.task else None))

    async def fail(self, attempt: Attempt, exc: ProviderError, step: str) -> LedgerRecord:
        outcome = outcome_for_error(exc, step, attempt, self.charging(attempt))
        if isinstance(exc, UnreadableResultError):
            if isinstance(exc.snapshot, TaskSnapshot):
                attempt.snapshot = exc.snapshot
            uri = await asyncio.to_thread(quarantine_body, self.cell, attempt, exc)
            self.logger.warning("%s: unreadable result of task %s kept at %s", attempt.row.prompt_id, exc.task_id, uri)
        return await self.books.book(attempt, outcome)

    async def on_bug(self, attempt: Attempt, exc: Exception) -> None:
        self.logger.exception("unexpected error on %s", attempt.row.prompt_id)
        if attempt.recorded:  # one outcome per row, never a second one
            return
        self.eligible.note(attempt.fingerprint, attempt.row.prompt_id)
        await self.books.book(attempt, outcome_for_error(exc, "any", attempt, self.charging(attempt)))


def request_for(row: PromptRow, cell: Cell, refs) -> GenerationRequest:
    return GenerationRequest(
        prompt=row.prompt,
        aspect_ratio=row.aspect_ratio,
        resolution=cell.resolution,
        output_format=row.output_format,
        references=refs,
    )
