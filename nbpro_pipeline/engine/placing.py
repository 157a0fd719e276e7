"""Putting what a paid task produced into storage: the image (checked, with lineage embedded) under
images/, or under quarantine/ when it fails its checks; the raw body of an unreadable result under
quarantine/ too. Paid for, so never dropped; apart, so never mistaken for a success. Blocking: the
engine runs these in a thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import BinaryIO

from PIL import Image

from nbpro_pipeline.engine.attempt import Attempt, PlacedImage
from nbpro_pipeline.engine.context import Cell
from nbpro_pipeline.engine.outcomes import Outcome
from nbpro_pipeline.image_files import ImageProblem, check_image, copy_with_lineage, inspect_image, thumbnail_jpeg
from nbpro_pipeline.models.common import OutputFormat
from nbpro_pipeline.models.ledger import DraftImage, OutcomeStatus
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.provenance import RequestParams, StoredLineage
from nbpro_pipeline.providers.base import DownloadedImage
from nbpro_pipeline.providers.errors import UnreadableResultError
from nbpro_pipeline.redaction import redact_url
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.usability import ImageSignals, measure_reduced
from nbpro_pipeline.usability.judge import Judgement

log = logging.getLogger(__name__)

# The verdict on a stored final image's signals (the cell's judge, with the request's references).
Judging = Callable[[ImageSignals], Judgement]

MAX_PROMPT_IN_IMAGE = 2000  # characters of the prompt a stored image carries (blob, and XMP when shared)


def request_params(request: GenerationRequest) -> RequestParams:
    return RequestParams(
        aspect_ratio=request.aspect_ratio.value,
        resolution=request.resolution.value,
        output_format=request.output_format.value,
        references=tuple(r.sha256 or redact_url(r.url) for r in request.references),  # no signed-URL tokens
    )


def lineage(cell: Cell, attempt: Attempt, charged: Outcome) -> StoredLineage:
    """What the stored file says about where it came from (embedded as XMP/C2PA by image_files): the
    model the provider says it served, else the one asked for; the prompt unless the run leaves prompts
    out, and shared in the standard marks only where the table allows it."""
    row, snap, download = attempt.row, attempt.snapshot, attempt.download
    served = snap.model_served if snap else None
    prompts = cell.settings.prompt_in_images
    shared = prompts and row.shares_prompt
    return StoredLineage(
        prompt_id=row.prompt_id,
        prompt_sha256=row.prompt_sha256,
        prompt=row.prompt[:MAX_PROMPT_IN_IMAGE] if prompts else None,
        prompt_shared=shared,
        prompt_writer=row.prompt_writer if shared else None,
        source_uri=row.source_uri,
        source_sha256=row.source_sha256,
        row_number=row.row_number,
        provider=cell.name,
        model=served or cell.traits.model_id,
        model_requested=cell.traits.model_id,
        model_stated=served is not None,
        model_version=snap.model_version if snap else None,
        ai_system=cell.traits.ai_system,
        task_id=snap.task_id if snap else None,
        params=request_params(attempt.request),
        fingerprint=attempt.fingerprint,
        provider_sha256=download.sha256 if download else None,
        cost=str(charged.charged),
        cost_unit=str(cell.price.unit),
        run_id=cell.run.run_id,
        partition_key=cell.run.partition_key,
        pipeline_version=cell.run.pipeline_version,
        created_at=datetime.now(UTC).isoformat(),
    )


def place_image(
    cell: Cell, attempt: Attempt, scratch: BinaryIO, charged: Outcome, judging: Judging | None = None
) -> Outcome:
    """Check the downloaded file ``scratch`` (seekable), store it, set ``attempt.placed`` (and, for a
    stored image, ``attempt.judged`` by ``judging``); the outcome keeps ``charged``'s amount and becomes a
    failure with the image's problem when it fails its checks. The verdict never changes the outcome."""
    request, download = attempt.request, attempt.download
    assert download is not None
    outcome, fmt, width, height = charged, request.output_format, None, None
    scratch.seek(0)
    try:
        info = inspect_image(scratch)
        fmt, width, height = info.format, info.width, info.height
        check_image(info, request.output_format, request.aspect_ratio, cell.resolution)
    except ImageProblem as exc:
        outcome = replace(charged, status=OutcomeStatus.FAILED, code=exc.code, message=exc.message)
    ext = "png" if fmt is OutputFormat.PNG else "jpg"
    st = cell.storage
    place = st.image_path if outcome.status is OutcomeStatus.SUCCEEDED else st.quarantine_path
    path = place(cell.name, cell.resolution, attempt.row.prompt_id, attempt.fingerprint, ext)
    scratch.seek(0)
    try:
        with st.open_atomic(path) as dst:
            sha, size = copy_with_lineage(scratch, dst, fmt, lineage(cell, attempt, charged), cell.settings.signer)
    except ImageProblem:  # too broken to annotate: keep the bytes as they came
        scratch.seek(0)
        st.put_stream(scratch, path)
        sha, size = download.sha256, download.bytes
    attempt.placed = PlacedImage(uri=st.uri(path), sha256=sha, bytes=size, width=width, height=height)
    if judging is not None and outcome.status is OutcomeStatus.SUCCEEDED:
        measured = _measured(scratch, attempt.row.prompt_id)
        if measured is not None:
            _keep_thumbnail(st, path, measured[1], attempt.row.prompt_id)
        attempt.judged = judging(measured[0]) if measured is not None else None
    return outcome


def _measured(scratch: BinaryIO, prompt_id: str) -> tuple[ImageSignals, Image.Image] | None:
    """The signals of the bytes as the provider sent them, and the reduced image they were read from;
    None (logged) when the pixels do not decode."""
    scratch.seek(0)
    try:
        return measure_reduced(scratch)
    except ImageProblem as exc:
        log.warning("%s: no usability signals: %s", prompt_id, exc.message)
        return None


def _keep_thumbnail(st: Storage, path: str, reduced: Image.Image, prompt_id: str) -> None:
    """The stored image's thumbnail, from the decode the signals made (pages would otherwise decode every
    full image again). One that cannot be written is only logged: pages fall back to the image."""
    thumb = st.thumbnail_path(path)
    if thumb is not None:
        try:
            st.write_bytes(thumb, thumbnail_jpeg(reduced))
        except OSError as exc:
            log.warning("%s: no thumbnail stored: %s", prompt_id, exc)


def place_draft(cell: Cell, attempt: Attempt, scratch: BinaryIO, download: DownloadedImage, n: int) -> DraftImage:
    """Store draft ``n`` of the answer (an image besides the final one) under drafts/, with lineage when it
    can be marked (its cost is 0: the task is booked once, on its row), as it came otherwise."""
    scratch.seek(0)
    try:
        fmt: OutputFormat | None = inspect_image(scratch).format
    except ImageProblem:
        fmt = None
    ext = "bin" if fmt is None else ("png" if fmt is OutputFormat.PNG else "jpg")
    st = cell.storage
    path = st.draft_path(cell.name, cell.resolution, attempt.row.prompt_id, attempt.fingerprint, n, ext)
    free = Outcome(OutcomeStatus.SUCCEEDED, charged=Decimal(0))
    scratch.seek(0)
    try:
        if fmt is None:
            raise ImageProblem("corrupt_image", "not an image we can mark")
        with st.open_atomic(path) as dst:
            marks = lineage(cell, replace(attempt, download=download), free)
            sha, _ = copy_with_lineage(scratch, dst, fmt, marks, cell.settings.signer)
    except ImageProblem:
        scratch.seek(0)
        st.put_stream(scratch, path)
        sha = download.sha256
    measured = _measured(scratch, attempt.row.prompt_id) if fmt is not None else None  # no page shows drafts
    return DraftImage(uri=st.uri(path), sha256=sha, phash=measured[0].phash if measured else None)


def quarantine_body(cell: Cell, attempt: Attempt, exc: UnreadableResultError) -> str:
    """Keep the body of a paid result the client could not read, as received; returns its URI."""
    kind = (exc.content_type or "").split(";")[0].strip().lower()
    ext = "json" if kind.endswith("json") else ("txt" if kind.startswith("text/") else "bin")
    st, pid = cell.storage, attempt.row.prompt_id
    path = st.quarantine_body_path(cell.name, cell.resolution, pid, exc.task_id, attempt.fingerprint, ext)
    with cell.storage.open_atomic(path) as fh:
        fh.write(exc.raw_body)
    return cell.storage.uri(path)
