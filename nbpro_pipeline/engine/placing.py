"""Putting what a paid task produced into storage: the image (checked, with lineage embedded) under
images/, or under quarantine/ when it fails its checks; the raw body of an unreadable result under
quarantine/ too. Paid for, so never dropped; apart, so never mistaken for a success. Blocking: the
engine runs these in a thread."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import BinaryIO

from nbpro_pipeline.engine.attempt import Attempt, PlacedImage
from nbpro_pipeline.engine.context import Cell
from nbpro_pipeline.engine.outcomes import Outcome
from nbpro_pipeline.image_files import ImageProblem, check_image, copy_with_lineage, inspect_image
from nbpro_pipeline.models.common import OutputFormat
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.provenance import RequestParams, StoredLineage
from nbpro_pipeline.providers.errors import UnreadableResultError
from nbpro_pipeline.redaction import redact_url

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


def place_image(cell: Cell, attempt: Attempt, scratch: BinaryIO, charged: Outcome) -> Outcome:
    """Check the downloaded file ``scratch`` (seekable), store it, set ``attempt.placed``; the outcome
    keeps ``charged``'s amount and becomes a failure with the image's problem when it fails its checks."""
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
    return outcome


def quarantine_body(cell: Cell, attempt: Attempt, exc: UnreadableResultError) -> str:
    """Keep the body of a paid result the client could not read, as received; returns its URI."""
    kind = (exc.content_type or "").split(";")[0].strip().lower()
    ext = "json" if kind.endswith("json") else ("txt" if kind.startswith("text/") else "bin")
    name = f"{attempt.row.prompt_id}.{exc.task_id}"
    path = cell.storage.quarantine_path(cell.name, cell.resolution, name, attempt.fingerprint, f"body.{ext}")
    with cell.storage.open_atomic(path) as fh:
        fh.write(exc.raw_body)
    return cell.storage.uri(path)
