"""Async client for Rivya Public API v1 (nano-banana-pro).

Every create carries an ``Idempotency-Key`` derived from the request fingerprint, so a create is
always safe to retry: Rivya answers a replay with the original task and charges nothing new. Answers
are read by ``rivya_answers`` (any plausible shape), never by the documented wire models alone.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

from nbpro_pipeline.media import EXTENSION_FOR_MIME, sniff_image_mime
from nbpro_pipeline.models.common import TaskState
from nbpro_pipeline.models.request import GenerationRequest, ReferenceImage
from nbpro_pipeline.providers.base import (
    Balance,
    CancelOutcome,
    ResultImage,
    SubmittedTask,
    TaskHandle,
    TaskLike,
    TaskSnapshot,
    as_handle,
)
from nbpro_pipeline.providers.base import idempotency_key as derive_key
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
    UnsupportedOperationError,
)
from nbpro_pipeline.providers.http import HttpProviderClient, json_or_none
from nbpro_pipeline.providers.reading import parse_json
from nbpro_pipeline.providers.rivya.answers import read_task, status_word, unwrap_task
from nbpro_pipeline.providers.rivya.traits import FILE_MIME_TYPES, MAX_FILE_BYTES, MODEL_ID, NAME, TRAITS
from nbpro_pipeline.providers.rivya.wire import (
    RivyaCreateRequest,
    RivyaCredits,
    RivyaErrorEnvelope,
    RivyaFile,
    RivyaModelList,
    RivyaParams,
    RivyaReferenceMediaItem,
)

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


class RivyaClient(HttpProviderClient):
    provider = NAME
    traits = TRAITS

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
            model=MODEL_ID,
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
        key = idempotency_key or derive_key("standalone", fingerprint)  # the engine passes its own
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
            task_id=task.task_id,
            fingerprint=fingerprint,
            idempotency_key=key,
            submitted_at=submitted_at,
            attempts=attempts,
            # a created task that says it succeeded but names no image gets no snapshot: wait() polls it
            snapshot=None if task.state is TaskState.SUCCEEDED and not task.images else task,
            replayed=response.headers.get("Idempotent-Replayed", "").strip().lower() in ("true", "1"),
            urls=task.urls,
        )

    def _read_created(self, response: httpx.Response) -> TaskSnapshot:
        """The task a create answered with (any 2xx; its id in the body, an envelope or ``Location``).
        Without an id nothing can be followed up: a task may exist, so that is ``SubmitOutcomeUnknown``,
        never a plain failure."""
        body = parse_json(response.content)
        task = read_task(body, location=response.headers.get("Location"))
        if task is None:
            log.warning("rivya create answered an unreadable body: %s", self._redact(response.text[:300]))
            raise self._error(
                SubmitOutcomeUnknown,
                f"the create was answered {response.status_code} with a body that names no task; "
                "a task may have been created",
                status_code=response.status_code,
            )
        return self.note_state_word(status_word(unwrap_task(body)), self._redacted(task))

    async def poll(self, task: TaskLike) -> TaskSnapshot:
        """The task now; one that says it succeeded but names no image raises ``UnreadableResultError``
        with its billable snapshot and the raw body."""
        handle = as_handle(task)
        path = self._task_path(handle, handle.urls.status, "/api/v1/generations/{}")
        response, _ = await self._send("GET", path, safe_to_repeat=True)
        body = parse_json(response.content)
        snapshot = read_task(body, task_id=handle.task_id)
        if snapshot is None:
            raise self._unreadable(response, handle.task_id, "not a task object", None)
        snapshot = self.note_state_word(status_word(unwrap_task(body)), self._redacted(snapshot))
        if snapshot.state is TaskState.SUCCEEDED and not snapshot.images:
            raise self._unreadable(response, handle.task_id, "succeeded without a result image", snapshot)
        return snapshot.model_copy(update={"urls": handle.urls})

    async def _fresh_images(self, snapshot: TaskSnapshot) -> tuple[ResultImage, ...]:
        return (await self.poll(TaskHandle(task_id=snapshot.task_id, urls=snapshot.urls))).images

    async def cancel(self, task: TaskLike) -> CancelOutcome:
        raise self._error(UnsupportedOperationError, "Rivya has no cancel endpoint; a task runs to its end")

    def _redacted(self, snapshot: TaskSnapshot) -> TaskSnapshot:
        if snapshot.error_message is None:
            return snapshot
        return snapshot.model_copy(update={"error_message": self._redact(snapshot.error_message)})

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
        if mime not in FILE_MIME_TYPES:
            raise self._error(
                InvalidReferenceError,
                f"{label}: not a JPEG, PNG or WebP image (checked by its first bytes, not its name)",
            )
        if len(data) > MAX_FILE_BYTES:
            raise self._error(
                InvalidReferenceError,
                f"{label}: {len(data)} bytes; Rivya accepts reference images up to {MAX_FILE_BYTES} bytes",
            )
        name = name or f"reference.{EXTENSION_FOR_MIME[mime]}"
        response, _ = await self._send(
            "POST",
            "/api/v1/files",
            files={"file": (name, data, mime)},
            data={"kind": "image", "model": MODEL_ID},
            safe_to_repeat=True,  # an upload charges nothing; a duplicate is harmless
        )
        meta = self._parse(RivyaFile, response)
        return ReferenceImage(
            url=meta.url,
            mime_type=meta.mimeType,
            name=meta.name or name,
            sha256=hashlib.sha256(data).hexdigest(),
            file_id=meta.id,
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
