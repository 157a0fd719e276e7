"""Writing an attempt's outcome down: one ledger row, net of what earlier rows of its task hold, added
to the cell report's counts (the one place they are kept), and flushed to storage off the event loop."""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import math
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from nbpro_pipeline.engine.attempt import Attempt
from nbpro_pipeline.engine.context import Cell
from nbpro_pipeline.engine.history import CellHistory
from nbpro_pipeline.engine.outcomes import STOP_CODES, Outcome
from nbpro_pipeline.engine.placing import request_params
from nbpro_pipeline.engine.report import CellReport, StoredImage
from nbpro_pipeline.models.ledger import LedgerRecord, OutcomeStatus
from nbpro_pipeline.storage.ledger import LedgerWriter
from nbpro_pipeline.usability.judge import Judgement

_MAX_MESSAGE = 500
log = logging.getLogger(__name__)


def ledger_record(cell: Cell, attempt: Attempt, outcome: Outcome, net: Decimal) -> LedgerRecord:
    row, task, snap, download, image = attempt.row, attempt.task, attempt.snapshot, attempt.download, attempt.placed
    finished = datetime.now(UTC)
    submitted_at = task.submitted_at if task else None
    return LedgerRecord(
        prompt_id=row.prompt_id,
        prompt_sha256=row.prompt_sha256,
        source_uri=row.source_uri,
        source_sha256=row.source_sha256,
        row_number=row.row_number,
        provider=cell.name,
        resolution=cell.resolution,
        aspect_ratio=attempt.request.aspect_ratio.value,
        output_format=attempt.request.output_format.value,
        model_requested=cell.traits.model_id,
        model_served=snap.model_served if snap else None,  # None: the provider did not say
        model_version=snap.model_version if snap else None,
        params=json.dumps(request_params(attempt.request).model_dump(mode="json"), sort_keys=True),
        fingerprint=attempt.fingerprint,
        idempotency_key=attempt.key,
        task_id=task.task_id if task else None,
        status=outcome.status,
        error_code=outcome.code,
        error_message=(outcome.message or "")[:_MAX_MESSAGE] or None,
        credits_reserved=snap.credits_reserved if snap else None,
        credits_final=snap.credits_final if snap else None,
        final_cost=net,
        cost_unit=cell.price.unit,
        cost_is_estimate=cell.price.is_estimate,
        estimated_usd=cell.price.to_usd(net),
        submitted_at=submitted_at,
        finished_at=finished,
        latency_s=(finished - submitted_at).total_seconds() if submitted_at else None,
        attempts=(task.attempts if task else 0) + (download.attempts if download else 0),
        polls=attempt.polls,
        image_uri=image.uri if image else None,
        image_sha256=image.sha256 if image else None,
        provider_sha256=download.sha256 if download else None,
        width=image.width if image else None,
        height=image.height if image else None,
        bytes=image.bytes if image else None,
        run_id=cell.run.run_id,
        partition_key=cell.run.partition_key,
        pipeline_version=cell.run.pipeline_version,
        recorded_at=finished,
        task_total=outcome.charged if task else None,
        stated_cost=outcome.stated,
        list_price=cell.price.per_image if task else None,
        cost_anomaly=outcome.anomaly,
        answer_images=attempt.answer_images,
        drafts=attempt.drafts,
        **_seen(attempt.judged),
    )


def _seen(judged: Judgement | None) -> dict[str, Any]:
    """The ledger's usability columns of a stored image's verdict (none without one)."""
    if judged is None:
        return {}
    signals = judged.signals
    return {
        "image_phash": signals.phash,
        "image_colour_grid": signals.colour_grid,
        "image_uniform_share": signals.uniform_share,
        "usability": judged.usability.value,
        "duplicate_of": judged.duplicate_of,
        "duplicate_distance": judged.distance,
    }


def tally(report: CellReport, record: LedgerRecord, thumbnails: int) -> None:
    """Add one row to the report: counts, money, failures by reason, a few images to show."""
    report.final_cost += record.final_cost
    report.estimated_usd += record.estimated_usd or 0
    report.credits_reserved += record.credits_reserved or 0
    report.polls += record.polls
    if record.status is OutcomeStatus.SUCCEEDED:
        report.succeeded += 1
        if len(report.images) < thumbnails and record.image_uri:
            report.images.append(
                StoredImage(
                    prompt_id=record.prompt_id,
                    uri=record.image_uri,
                    width=record.width or 0,
                    height=record.height or 0,
                    bytes=record.bytes or 0,
                )
            )
        return
    if record.status is OutcomeStatus.FAILED:
        report.failed += 1
    else:
        report.skipped += 1
        if report.stop_reason is None and record.error_code in STOP_CODES:
            report.stop_reason = record.error_message
    report.count_failure(record.error_code or record.status.value)


class TaskSample:
    """The ``size`` smallest task ids booked, as ``sorted(all_ids)[:size]`` would pick them, without keeping
    every id of the run: the tasks the reconcile check asks the provider about again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.ids: list[str] = []

    def add(self, task_id: str) -> None:
        at = bisect.bisect_left(self.ids, task_id)
        if at >= self.size or (at < len(self.ids) and self.ids[at] == task_id):
            return
        self.ids.insert(at, task_id)
        del self.ids[self.size :]


class Books:
    """The cell's ledger: rows are buffered and written as Parquet parts in a thread, one part at a time,
    so a write to object storage never blocks the event loop."""

    def __init__(self, cell: Cell, history: CellHistory, report: CellReport) -> None:
        s = cell.settings
        self.cell, self.history, self.report = cell, history, report
        # the writer never flushes by itself: this class decides when, and flushes off the loop
        self.writer = LedgerWriter(cell.storage, cell.name, cell.resolution, cell.run.run_id, flush_rows=2**62,
                                   flush_interval_s=math.inf)  # fmt: skip
        self._rows, self._interval = s.ledger_flush_rows, s.ledger_flush_interval_s
        self._pending = 0
        self._last = time.monotonic()
        self._lock = asyncio.Lock()
        self.sample = TaskSample(s.reconcile_sample)  # of the tasks this run booked a row for

    async def book(self, attempt: Attempt, outcome: Outcome) -> LedgerRecord:
        """Write ``attempt``'s one ledger row (its net charge), count it, and flush when due."""
        task_id = attempt.task.task_id if attempt.task else None
        if task_id is not None:
            self.sample.add(task_id)
        record = self._record(attempt, outcome, self.history.net_of_earlier(task_id, outcome.charged))
        self.writer.add(record)
        attempt.record = record
        tally(self.report, record, self.cell.settings.thumbnails)
        self._pending += 1
        if self._pending >= self._rows or time.monotonic() - self._last >= self._interval:
            await self.flush()
        return record

    def _record(self, attempt: Attempt, outcome: Outcome, net: Decimal) -> LedgerRecord:
        """The row; one whose provider figures do not fit the ledger's columns still books its money, with
        those left out and the reason in ``cost_anomaly`` (a row is never lost to a bad value)."""
        try:
            return ledger_record(self.cell, attempt, outcome, net)
        except ValidationError as exc:
            log.warning(
                "%s: ledger row out of range, kept without the provider's figures: %s", attempt.row.prompt_id, exc
            )
            note = f"provider figures out of the ledger's range left out: {str(exc)[:200]}"
            return ledger_record(self.cell, replace(attempt, snapshot=None), replace(outcome, anomaly=note), net)

    async def flush(self) -> None:
        async with self._lock:
            self._pending, self._last = 0, time.monotonic()
            await asyncio.to_thread(self.writer.flush)
