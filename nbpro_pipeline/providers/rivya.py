"""Async client for Rivya Public API v1 (nano-banana-pro).

Every create carries an ``Idempotency-Key`` derived from the request fingerprint, so a create is
always safe to retry: Rivya answers a replay with the original task and charges nothing new.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

from nbpro_pipeline.media import EXTENSION_FOR_MIME, sniff_image_mime
from nbpro_pipeline.models.common import (
    RIVYA_FILE_MIME_TYPES,
    RIVYA_MAX_FILE_BYTES,
    RIVYA_MODEL_ID,
    Provider,
    TaskState,
)
from nbpro_pipeline.models.request import GenerationRequest, ReferenceImage
from nbpro_pipeline.models.rivya import (
    RivyaCreateRequest,
    RivyaCredits,
    RivyaErrorEnvelope,
    RivyaFile,
    RivyaModelList,
    RivyaParams,
    RivyaReferenceMediaItem,
    RivyaTask,
    RivyaTaskError,
    RivyaTaskHead,
)
from nbpro_pipeline.providers.base import (
    Balance,
    CancelOutcome,
    ResultImage,
    SubmittedTask,
    TaskSnapshot,
)
from nbpro_pipeline.providers.errors import (
    AuthError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidReferenceError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    RetryableError,
    SubmitOutcomeUnknown,
    UnreadableResultError,
    UnsupportedOperationError,
)
from nbpro_pipeline.providers.http import HttpProviderClient, first_problem, json_or_none
from nbpro_pipeline.providers.traits import RIVYA_TRAITS

log = logging.getLogger(__name__)

DEFAULT_RIVYA_URL = "https://rivya.ai"

_CODE_TO_ERROR: dict[str, type[ProviderError]] = {
    "validation_failed": InvalidRequestError,
    "api_key_missing": AuthError,
    "api_key_invalid": AuthError,
    "api_key_revoked": AuthError,
    "api_key_expired": AuthError,
    "api_scope_denied": AuthError,
    "not_found": NotFoundError,
    "idempotency_conflict": IdempotencyConflictError,
    "rate_limited": RateLimitedError,
    "insufficient_credits": InsufficientFundsError,
    "public_api_disabled": RetryableError,
}


def idempotency_key_for(fingerprint: str) -> str:
    """Deterministic key: the same request always dedupes to the same Rivya task within 24 h."""
    return "nbpro-" + hashlib.sha256(f"rivya-idem:{fingerprint}".encode()).hexdigest()[:40]


class RivyaClient(HttpProviderClient):
    provider = Provider.RIVYA
    traits = RIVYA_TRAITS

    def __init__(self, base_url: str = DEFAULT_RIVYA_URL, api_key: str = "", **kw) -> None:
        super().__init__(base_url, api_key, **kw)

    # -- errors -------------------------------------------------------------------------------------
    def _error_from_response(self, response: httpx.Response) -> ProviderError:
        body = json_or_none(response)
        try:
            envelope = RivyaErrorEnvelope.model_validate(body)
        except ValueError:
            text = response.text[:300] if body is None else str(body)[:300]
            return self._status_error(response, None, f"HTTP {response.status_code}: {text}", None)
        err = envelope.error
        return self._status_error(
            response, err.code, err.message or err.code, err.requestId, cls=_CODE_TO_ERROR.get(err.code)
        )

    # -- tasks --------------------------------------------------------------------------------------
    def wire_request(self, request: GenerationRequest, client_request_id: str | None = None) -> RivyaCreateRequest:
        self._check_locally(request)
        refs = [
            RivyaReferenceMediaItem(url=r.url, kind="image", name=r.name, mimeType=r.mime_type)
            for r in request.references
        ]
        return RivyaCreateRequest(
            model=RIVYA_MODEL_ID,
            prompt=request.prompt,
            params=RivyaParams(
                aspect_ratio=request.aspect_ratio,
                resolution=request.resolution,
                output_format=request.output_format,
                referenceMediaItems=refs or None,
            ),
            client_request_id=client_request_id,
        )

    async def submit(
        self,
        request: GenerationRequest,
        *,
        idempotency_key: str | None = None,
        client_request_id: str | None = None,
    ) -> SubmittedTask:
        fingerprint = request.fingerprint(self.provider)
        key = idempotency_key or idempotency_key_for(fingerprint)
        body = self.wire_request(request, client_request_id or f"nbpro-{fingerprint[:24]}")
        submitted_at = datetime.now(UTC)
        response, attempts = await self._send(
            "POST",
            "/api/v1/generations",
            json=body.model_dump(mode="json", exclude_none=True),
            headers={"Idempotency-Key": key},
            safe_to_repeat=True,  # the key makes a replay return the original task, uncharged
            create=True,
        )
        task = self._read_created(response)
        return SubmittedTask(
            provider=self.provider,
            task_id=task.id,
            fingerprint=fingerprint,
            idempotency_key=key,
            submitted_at=submitted_at,
            attempts=attempts,
            # a created task whose result is unreadable gets no snapshot: wait() polls it and says so
            snapshot=self._snapshot(task) if isinstance(task, RivyaTask) else None,
            replayed=response.headers.get("Idempotent-Replayed", "").strip().lower() in ("true", "1"),
        )

    def _read_created(self, response: httpx.Response) -> RivyaTaskHead:
        """The task a create answered with (any 2xx). Without even an id and a status nothing can be
        followed up: a task may exist, so that is ``SubmitOutcomeUnknown``, never a plain failure."""
        try:
            return self._read_task(response, "(new)")
        except UnreadableResultError as exc:
            head = _head_or_none(response.content)
            if head is not None:
                return head
            log.warning("rivya create answered an unreadable body: %s", self._redact(response.text[:300]))
            raise self._error(
                SubmitOutcomeUnknown,
                f"the create was answered {response.status_code} with a body that is not a task "
                f"({exc.message}); a task may have been created",
                status_code=response.status_code,
            ) from exc

    async def get_task(self, task_id: str) -> RivyaTask:
        """The task object; a succeeded task without a readable result raises ``UnreadableResultError``."""
        response, _ = await self._send("GET", f"/api/v1/generations/{task_id}", safe_to_repeat=True)
        return self._read_task(response, task_id)

    def _read_task(self, response: httpx.Response, task_id: str) -> RivyaTask:
        """Read a task object tolerantly. Unfinished, or failed, it is returned whatever its ``result``
        or ``error`` look like; succeeded, it must name a downloadable image, else the raw body goes
        back in ``UnreadableResultError`` with the billable snapshot."""
        try:
            task = RivyaTask.model_validate_json(response.content)
        except ValueError as exc:
            head = _head_or_none(response.content)
            if head is None:
                raise self._unreadable(response, task_id, f"not a task object: {first_problem(exc)}", None) from None
            if head.state is TaskState.SUCCEEDED:
                reason = f"succeeded but its result is unreadable: {first_problem(exc)}"
                raise self._unreadable(response, head.id, reason, self._snapshot(head)) from None
            error = RivyaTaskError(message=f"unreadable error object: {first_problem(exc)}")
            known = head.model_dump(include=set(RivyaTaskHead.model_fields))  # not the unreadable extras
            return RivyaTask(**known, error=error if head.state is TaskState.FAILED else None)
        if task.state is TaskState.SUCCEEDED and not (task.result and task.result.image_urls()):
            raise self._unreadable(response, task.id, "succeeded without a result image URL", self._snapshot(task))
        return task

    async def poll(self, task_id: str) -> TaskSnapshot:
        return self._snapshot(await self.get_task(task_id))

    async def _fresh_images(self, task_id: str) -> tuple[ResultImage, ...]:
        return (await self.poll(task_id)).images

    async def cancel(self, task_id: str) -> CancelOutcome:
        raise self._error(UnsupportedOperationError, "Rivya has no cancel endpoint; a task runs to its end")

    def _snapshot(self, task: RivyaTaskHead) -> TaskSnapshot:
        # a bare head keeps the unreadable result/error among its extra attributes: never read those
        result = task.result if isinstance(task, RivyaTask) else None
        error = task.error if isinstance(task, RivyaTask) else None
        return TaskSnapshot(
            provider=self.provider,
            task_id=task.id,
            state=task.state,
            images=tuple(ResultImage(url=u) for u in (result.image_urls() if result else ())),
            error_code=error.code if error else None,
            error_message=self._redact(error.message) if error else None,
            credits_reserved=task.reserved_credits,
            # Only a terminal task's final_credits is settled: the docs' own example shows 0 (not null)
            # on a fresh task, and the engine books credits_final whenever it is not None.
            credits_final=task.settled_credits,
            run_s=task.run_s,  # Rivya stamps the terminal transition: the poll schedule learns from it
        )

    # -- files, credits, models ---------------------------------------------------------------------
    async def upload_reference(self, source: bytes | Path, *, name: str | None = None) -> ReferenceImage:
        """Upload a reference image through the Files API after checking it locally (type by magic
        bytes, 30 MB) so a bad file fails here with a clear message instead of at Rivya."""
        if isinstance(source, Path):
            data = source.read_bytes()
            name = name or source.name
        else:
            data = source
        mime = sniff_image_mime(data[:16])
        label = name or "reference"
        if mime not in RIVYA_FILE_MIME_TYPES:
            raise self._error(
                InvalidReferenceError,
                f"{label}: not a JPEG, PNG or WebP image (checked by its first bytes, not its name)",
            )
        if len(data) > RIVYA_MAX_FILE_BYTES:
            raise self._error(
                InvalidReferenceError,
                f"{label}: {len(data)} bytes; Rivya accepts reference images up to {RIVYA_MAX_FILE_BYTES} bytes",
            )
        name = name or f"reference.{EXTENSION_FOR_MIME[mime]}"
        response, _ = await self._send(
            "POST",
            "/api/v1/files",
            files={"file": (name, data, mime)},
            data={"kind": "image", "model": RIVYA_MODEL_ID},
            safe_to_repeat=True,  # an upload charges nothing; a duplicate is harmless
        )
        meta = self._parse(RivyaFile, response)
        return ReferenceImage(
            url=meta.url,
            mime_type=meta.mimeType,
            name=meta.name or name,
            sha256=hashlib.sha256(data).hexdigest(),
            rivya_file_id=meta.id,
        )

    async def get_file(self, file_id: str) -> RivyaFile:
        response, _ = await self._send("GET", f"/api/v1/files/{file_id}", safe_to_repeat=True)
        return self._parse(RivyaFile, response)

    async def balance(self) -> Balance:
        response, _ = await self._send("GET", "/api/v1/credits", safe_to_repeat=True)
        credits = self._parse(RivyaCredits, response)
        return Balance(provider=self.provider, amount=Decimal(credits.current_credits), unit="credits")

    async def models(self) -> RivyaModelList:
        response, _ = await self._send("GET", "/api/v1/models", safe_to_repeat=True)
        return self._parse(RivyaModelList, response)


def _head_or_none(body: bytes) -> RivyaTaskHead | None:
    try:
        return RivyaTaskHead.model_validate_json(body)
    except ValueError:
        return None
