"""Rivya Public API v1 as the sandbox serves it (providers.md section 1).

Every error uses Rivya's envelope ``{"error": {"code", "message", "requestId"}}``; messages say what
was wrong and what to do, because a pipeline operator reads them in a failure report.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nbpro_pipeline.media import sniff_image_mime
from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Resolution, nearest_aspect_ratio
from nbpro_pipeline.providers.rivya.traits import MODEL_ID as RIVYA_MODEL_ID
from nbpro_pipeline.providers.rivya.wire import RivyaCreateRequest, RivyaParams
from nbpro_pipeline.sandbox import wire_shapes
from nbpro_pipeline.sandbox.faults import body_digest, route_digest
from nbpro_pipeline.sandbox.images import image_size
from nbpro_pipeline.sandbox.responses import (
    DroppedConnection,
    base_url,
    describe_validation_error,
    iso_utc,
    json_response,
)
from nbpro_pipeline.sandbox.runtime import RIVYA, Admitted, Refusal, SandboxRuntime
from nbpro_pipeline.sandbox.store import Billing, IdempotencyRecord, LedgerEntry, StoredFile
from nbpro_pipeline.sandbox.tasks import FAILURE_MESSAGES, Phase, SandboxTask
from nbpro_pipeline.sandbox.urls import file_url, parse_sandbox_url, safe_file_name

KEY_PREFIX = "rvya_sk_"
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_STATUS = {
    Phase.QUEUED: "queued",
    Phase.PROCESSING: "processing",
    Phase.SUCCEEDED: "succeeded",
    Phase.FAILED: "failed",
}
_UPLOAD_KINDS = ("image", "video", "audio")
_MAX_IDEMPOTENCY_KEY = 255

_REFUSALS: dict[str, tuple[int, str, str]] = {
    "disabled": (503, "public_api_disabled", "The public API is disabled for this account; try again later"),
    "missing": (401, "api_key_missing", "No API key: send 'Authorization: Bearer rvya_sk_...'"),
    "invalid": (
        401,
        "api_key_invalid",
        "The API key is not valid: Rivya keys look like 'rvya_sk_...' and go in 'Authorization: Bearer <key>'",
    ),
    "revoked": (401, "api_key_revoked", "This API key was revoked; create a new key in the Rivya dashboard"),
    "expired": (401, "api_key_expired", "This API key has expired; create a new key in the Rivya dashboard"),
    "scope_denied": (403, "api_scope_denied", "This API key lacks the scope for this endpoint"),
    "rate_limited": (429, "rate_limited", "Too many requests; retry after the number of seconds in Retry-After"),
    "concurrency": (429, "rate_limited", "Too many generations in progress; retry after Retry-After seconds"),
}
_5XX_CODES = {500: "internal_error", 502: "bad_gateway", 503: "service_unavailable"}


def rivya_error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "requestId": request_id}}


def rivya_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    request_id = "req_" + secrets.token_hex(12)
    body = rivya_error_body(code, message, request_id)
    return json_response(body, status, headers={"x-request-id": request_id, **(headers or {})})


def _refusal_response(refusal: Refusal) -> Response:
    if refusal.kind == "drop_connection":
        return DroppedConnection()
    if refusal.kind == "http_5xx":
        status = refusal.status or 500
        return rivya_error(status, _5XX_CODES.get(status, "internal_error"), "Transient server error; retry")
    status, code, message = _REFUSALS[refusal.kind]
    if refusal.detail:
        message = f"{message} ({refusal.detail})"
    headers = {"Retry-After": refusal.retry_after} if refusal.retry_after else None
    return rivya_error(status, code, message, headers)


def model_catalogue_entry(credits_per_image: int) -> dict[str, Any]:
    return {
        "id": RIVYA_MODEL_ID,
        "display_name": "Nano Banana Pro",
        "category": "image",
        "runtime": "async",
        "base_credits": credits_per_image,
        "billing_type": "FIXED",
        "max_prompt_length": 10000,
        "max_reference_images": 8,
        "reference_media_kinds": ["image"],
        "params": {
            "aspect_ratio": {"type": "enum", "options": [a.value for a in AspectRatio], "default": "1:1"},
            "resolution": {"type": "enum", "options": [r.value for r in Resolution], "default": "1K"},
            "output_format": {"type": "enum", "options": [f.value for f in OutputFormat], "default": "png"},
            "referenceMediaItems": {"type": "array", "max_items": 8, "kinds": ["image"]},
        },
        "api_status": "available",
        "description": "Google Gemini 3 Pro Image (sandbox emulation)",
    }


def _parse_create(body: bytes) -> RivyaCreateRequest | Response:
    """The create request from its body, or the 400 that says what is wrong with it."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return rivya_error(400, "validation_failed", f"The request body is not valid JSON: {exc}")
    if not isinstance(payload, dict):
        return rivya_error(400, "validation_failed", "The request body must be a JSON object")
    try:
        return RivyaCreateRequest.model_validate(payload)
    except ValidationError as exc:
        return rivya_error(400, "validation_failed", f"Invalid request: {describe_validation_error(exc)}")


class RivyaApi:
    def __init__(self, runtime: SandboxRuntime) -> None:
        self.rt = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/generations", self.create_generation, methods=["POST"]),
            Route("/api/v1/generations/{task_id}", self.get_generation, methods=["GET"]),
            Route("/api/v1/credits", self.credits, methods=["GET"]),
            Route("/api/v1/models", self.models, methods=["GET"]),
            Route("/api/v1/files", self.upload_file, methods=["POST"]),
            Route("/api/v1/files/{file_id}", self.get_file, methods=["GET"]),
        ]

    def fallback_routes(self) -> list[BaseRoute]:
        """The 404 for any other ``/api`` path; mounted after every route (mutation mode's alt paths too)."""
        return [Route("/api/{rest:path}", self.not_found, methods=_ALL_METHODS)]

    def _admit(self, request: Request, digest: str) -> Admitted | Response:
        admission = self.rt.admit(RIVYA, request.headers.get("authorization"), digest, time.time(), KEY_PREFIX)
        if isinstance(admission, Refusal):
            return _refusal_response(admission)
        return admission

    def _admit_bodiless(self, request: Request) -> Admitted | Response:
        return self._admit(request, route_digest(request.method, request.url.path))

    # --- generations -----------------------------------------------------------------------------

    async def create_generation(self, request: Request) -> Response:
        body = await request.body()
        digest = body_digest(body)
        admitted = self._admit(request, digest)
        if isinstance(admitted, Response):
            return admitted
        now = admitted.now
        create = _parse_create(body)
        if isinstance(create, Response):
            return create
        params = create.params or RivyaParams()
        reference_sizes = self._reference_sizes(params.referenceMediaItems or [])
        if isinstance(reference_sizes, Response):
            return reference_sizes
        key = request.headers.get("idempotency-key")
        if key is not None:
            key = key.strip()
            answered = self._idempotent_answer(request, key, digest, now)
            if answered is not None:
                return answered
        refused = self._refusal(now)
        if refused is not None:
            return refused
        return self._start_task(request, admitted, create, params, reference_sizes, key, digest)

    def _reference_sizes(self, references: list) -> list[tuple[int, int]] | Response:
        """The pixel size of each reference, all uploaded through the Files API (else a 400)."""
        sizes = []
        for i, item in enumerate(references):
            size = self._uploaded_image_size(item.url)
            if size is None:
                return rivya_error(
                    400,
                    "validation_failed",
                    f"params.referenceMediaItems[{i}].url is not a Rivya Files API URL: upload the image "
                    "with POST /api/v1/files and pass the url it returns",
                )
            sizes.append(size)
        return sizes

    def _idempotent_answer(self, request: Request, key: str, digest: str, now: float) -> Response | None:
        """What an ``Idempotency-Key`` answers by itself: a bad key, a conflict, or the replay of its task
        (200 whatever the knob); None when the create goes on."""
        if not key or len(key) > _MAX_IDEMPOTENCY_KEY:
            return rivya_error(
                400, "validation_failed", f"Idempotency-Key must be 1 to {_MAX_IDEMPOTENCY_KEY} characters"
            )
        record = self.rt.store.idempotency(key)
        if record is None or now - record.created_at >= self.rt.config.idempotency_ttl_s:
            return None
        if record.body_digest != digest:
            return rivya_error(
                409,
                "idempotency_conflict",
                f"Idempotency-Key {key!r} was already used with a different request body; "
                "use a new key for a different request",
            )
        original = self.rt.task(RIVYA, record.task_id)
        if original is None:
            return None
        return json_response(self._task_json(original, request, now), headers={"Idempotent-Replayed": "true"})

    def _refusal(self, now: float) -> Response | None:
        """A create refused before any task is made: the account is full (429) or out of credits (402)."""
        refusal = self.rt.concurrency_refusal(RIVYA, now)
        if refusal is not None:
            return _refusal_response(refusal)
        price = self.rt.config.billing.rivya_credits_per_image
        balance = self.rt.store.balance(RIVYA)
        if balance < price:
            return rivya_error(
                402,
                "insufficient_credits",
                f"Not enough credits: {balance} available, {RIVYA_MODEL_ID} costs {price} per image; "
                "top up your balance and retry",
            )
        return None

    def _start_task(
        self,
        request: Request,
        admitted: Admitted,
        create: RivyaCreateRequest,
        params: RivyaParams,
        reference_sizes: list[tuple[int, int]],
        key: str | None,
        digest: str,
    ) -> Response:
        """Make the task, reserve its price, remember its key; answer as the wire knobs say."""
        now, price = admitted.now, self.rt.config.billing.rivya_credits_per_image
        aspect = params.aspect_ratio
        if aspect is AspectRatio.AUTO:
            aspect = nearest_aspect_ratio(*reference_sizes[0]) if reference_sizes else AspectRatio.R1_1
        plan = self.rt.plan(RIVYA, admitted.draw, params.resolution.value)
        task = self.rt.new_task(
            RIVYA,
            plan,
            now,
            prompt=create.prompt,
            aspect_ratio=aspect.value,
            requested_aspect_ratio=params.aspect_ratio.value,
            resolution=params.resolution.value,
            output_format=params.output_format.value,
            price=price,
            reference_urls=[item.url for item in params.referenceMediaItems or []],
            client_request_id=create.client_request_id,
            idempotency_key=key,
        )
        billing = Billing(LedgerEntry(RIVYA, task.id, "reserve", price, now), -price)
        record = IdempotencyRecord(key, digest, task.id, now) if key else None
        self.rt.register(task, billing, record)
        if plan.drop_after_processing:
            return DroppedConnection()
        return json_response(
            self._task_json(task, request, now, phase=Phase.QUEUED), self.rt.config.wire.rivya_create_status
        )

    def _uploaded_image_size(self, url: str) -> tuple[int, int] | None:
        ref = parse_sandbox_url(url)
        if ref is None or ref.kind != "file":
            return None
        stored = self.rt.store.files.get(ref.id)
        return (stored.width, stored.height) if stored and stored.kind == "image" else None

    async def get_generation(self, request: Request) -> Response:
        admitted = self._admit_bodiless(request)
        if isinstance(admitted, Response):
            return admitted
        task_id = request.path_params["task_id"]
        task = self.rt.task(RIVYA, task_id)
        if task is None:
            return rivya_error(404, "not_found", f"No generation with id {task_id!r}")
        return json_response(self._task_json(task, request, admitted.now))

    def _task_json(self, task: SandboxTask, request: Request, now: float, phase: Phase | None = None) -> dict:
        phase = phase or task.phase(now)
        result = error = final = None
        if phase is Phase.SUCCEEDED:
            urls = self.rt.result_urls(task, base_url(request), now)
            result = {"primary_url": urls[0], "urls": urls}
            final = task.price
        elif phase is Phase.FAILED:
            kind = task.failure or "INFERENCE_FAILURE"
            error = {"code": "generation_failed", "message": f"{kind}: {FAILURE_MESSAGES.get(kind, kind)}"}
            final = 0
        updated = task.created_at if phase is Phase.QUEUED else task.updated_at(now)
        body = {
            "id": task.id,
            "status": _STATUS[phase],
            "model": RIVYA_MODEL_ID,
            "reserved_credits": task.price,
            "final_credits": final,
            "created_at": iso_utc(task.created_at),
            "updated_at": iso_utc(updated),
            "result": result,
            "error": error,
            "client_request_id": task.client_request_id,
        }
        return wire_shapes.rivya_task(self.rt.config.wire, body)

    # --- account ---------------------------------------------------------------------------------

    async def credits(self, request: Request) -> Response:
        admitted = self._admit_bodiless(request)
        if isinstance(admitted, Response):
            return admitted
        return json_response({"current_credits": self.rt.store.balance(RIVYA)})

    async def models(self, request: Request) -> Response:
        admitted = self._admit_bodiless(request)
        if isinstance(admitted, Response):
            return admitted
        entry = model_catalogue_entry(self.rt.config.billing.rivya_credits_per_image)
        return json_response({"object": "list", "data": [entry]})

    # --- files -----------------------------------------------------------------------------------

    async def upload_file(self, request: Request) -> Response:
        # Refuse hopeless bodies before reading them into memory, as a real edge proxy would.
        ceiling_mb = max(self.rt.config.max_upload_mb_nano_banana_pro, self.rt.config.max_upload_mb_default)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > (ceiling_mb + 1) * 1024 * 1024:
            return rivya_error(
                400, "validation_failed", f"The upload is {declared} bytes; files may be at most {ceiling_mb:g} MB"
            )
        body = await request.body()
        admitted = self._admit(request, body_digest(body))
        if isinstance(admitted, Response):
            return admitted
        try:
            form = await request.form(max_files=1, max_fields=16)
        except Exception as exc:  # python-multipart and Starlette raise several types for bad bodies
            return rivya_error(400, "validation_failed", f"Expected a multipart/form-data body: {exc}")
        try:
            return await self._store_upload(request, form, admitted.now)
        finally:
            await form.close()

    async def _store_upload(self, request: Request, form: Any, now: float) -> Response:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return rivya_error(400, "validation_failed", "The multipart field 'file' (the file itself) is required")
        kind = form.get("kind")
        if kind not in _UPLOAD_KINDS:
            return rivya_error(400, "validation_failed", "The multipart field 'kind' must be image, video or audio")
        if kind != "image":
            return rivya_error(
                400, "validation_failed", f"kind={kind} is not accepted: {RIVYA_MODEL_ID} takes image references only"
            )
        model = form.get("model")
        if model is not None and model != RIVYA_MODEL_ID:
            return rivya_error(
                400, "validation_failed", f"Unknown model {model!r}; this sandbox knows {RIVYA_MODEL_ID}"
            )
        client_request_id = form.get("client_request_id")
        if client_request_id is not None and (not isinstance(client_request_id, str) or len(client_request_id) > 128):
            return rivya_error(400, "validation_failed", "client_request_id must be text of at most 128 characters")
        data = await upload.read()
        limit_mb = (
            self.rt.config.max_upload_mb_nano_banana_pro
            if model == RIVYA_MODEL_ID
            else self.rt.config.max_upload_mb_default
        )
        if len(data) > limit_mb * 1024 * 1024:
            return rivya_error(
                400,
                "validation_failed",
                f"The file is {len(data)} bytes; the limit is {limit_mb:g} MB"
                + ("" if model == RIVYA_MODEL_ID else f" (send model={RIVYA_MODEL_ID} for its 30 MB limit)"),
            )
        if not data:
            return rivya_error(400, "validation_failed", "The file is empty")
        mime = sniff_image_mime(data[:16])
        if mime is None:
            return rivya_error(
                400,
                "validation_failed",
                "Unsupported file type: its signature (magic bytes) is not JPEG, PNG or WEBP. The file name "
                "and declared content type are ignored",
            )
        size = image_size(data)
        if size is None:
            return rivya_error(400, "validation_failed", f"The file starts like {mime} but is not a readable image")
        stored = StoredFile(
            id="file_" + secrets.token_hex(12),
            name=(upload.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1] or "upload",
            kind="image",
            mime_type=mime,
            size=len(data),
            width=size[0],
            height=size[1],
            created_at=now,
            client_request_id=client_request_id,
        )
        self.rt.store.add_file(stored, data)
        return json_response(self._file_json(stored, request))

    def _file_json(self, stored: StoredFile, request: Request) -> dict:
        out = {
            "id": stored.id,
            "url": file_url(base_url(request), stored.id, safe_file_name(stored.name)),
            "kind": stored.kind,
            "name": stored.name,
            "mimeType": stored.mime_type,
            "size": stored.size,
            "created_at": iso_utc(stored.created_at),
        }
        if stored.client_request_id is not None:
            out["client_request_id"] = stored.client_request_id
        return out

    async def get_file(self, request: Request) -> Response:
        admitted = self._admit_bodiless(request)
        if isinstance(admitted, Response):
            return admitted
        file_id = request.path_params["file_id"]
        stored = self.rt.store.files.get(file_id)
        if stored is None:
            return rivya_error(404, "not_found", f"No file with id {file_id!r}")
        return json_response(self._file_json(stored, request))

    async def not_found(self, request: Request) -> Response:
        hint = ""
        if request.url.path.startswith("/api/v1/generations/") and request.method != "GET":
            hint = "; generations cannot be cancelled or changed (Rivya has no cancel endpoint)"
        return rivya_error(404, "not_found", f"No route {request.method} {request.url.path}{hint}")
