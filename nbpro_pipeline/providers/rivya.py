"""Async client for Rivya Public API v1 (nano-banana-pro).

Every create carries an ``Idempotency-Key`` derived from the request fingerprint, so a create is
always safe to retry: Rivya answers a replay with the original task and charges nothing new.
"""

from __future__ import annotations

import hashlib
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
    UnsupportedOperationError,
)
from nbpro_pipeline.providers.http import HttpProviderClient, json_or_none
from nbpro_pipeline.providers.traits import RIVYA_TRAITS

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
        )
        task = self._parse(RivyaTask, response)
        return SubmittedTask(
            provider=self.provider,
            task_id=task.id,
            fingerprint=fingerprint,
            idempotency_key=key,
            submitted_at=submitted_at,
            attempts=attempts,
            snapshot=self._snapshot(task),
        )

    async def get_task(self, task_id: str) -> RivyaTask:
        response, _ = await self._send("GET", f"/api/v1/generations/{task_id}", safe_to_repeat=True)
        return self._parse(RivyaTask, response)

    async def poll(self, task_id: str) -> TaskSnapshot:
        return self._snapshot(await self.get_task(task_id))

    async def _fresh_images(self, task_id: str) -> tuple[ResultImage, ...]:
        return (await self.poll(task_id)).images

    async def cancel(self, task_id: str) -> CancelOutcome:
        raise self._error(UnsupportedOperationError, "Rivya has no cancel endpoint; a task runs to its end")

    def _snapshot(self, task: RivyaTask) -> TaskSnapshot:
        urls: list[str] = []
        if task.result is not None:  # primary first, then the others, no duplicates
            primary = task.result.primary_url
            urls = [primary, *(u for u in task.result.urls if u != primary)]
        return TaskSnapshot(
            provider=self.provider,
            task_id=task.id,
            state=task.state,
            images=tuple(ResultImage(url=u) for u in urls),
            error_code=task.error.code if task.error else None,
            error_message=self._redact(task.error.message) if task.error else None,
            credits_reserved=task.reserved_credits,
            credits_final=task.final_credits,
            # Rivya stamps the terminal transition: the exact run time, which the poll schedule learns from
            run_s=(task.updated_at - task.created_at).total_seconds() if task.state.terminal else None,
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
