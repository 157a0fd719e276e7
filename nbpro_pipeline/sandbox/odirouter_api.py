"""OdiRouter's fal-style queue API for ``nano_banana_pro`` as the sandbox serves it (providers.md section 2).

Two error envelopes, as on the real service: the gateway's ``{"error": {"code", "message"},
"request_id"}`` for auth, rate limits, balance and transport faults, and the application's
``{"detail": ...}`` for validation (422) and unknown request ids (404).
"""

from __future__ import annotations

import json
import secrets
import time

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nbpro_pipeline.models.common import AspectRatio, nearest_aspect_ratio
from nbpro_pipeline.providers.odirouter.traits import ENDPOINT_ID as ODIROUTER_ENDPOINT_ID
from nbpro_pipeline.providers.odirouter.wire import OdiSubmitRequest
from nbpro_pipeline.sandbox import wire_shapes
from nbpro_pipeline.sandbox.faults import body_digest, route_digest
from nbpro_pipeline.sandbox.responses import (
    DroppedConnection,
    base_url,
    describe_validation_error,
    json_response,
)
from nbpro_pipeline.sandbox.runtime import ODIROUTER, Admitted, Refusal, SandboxRuntime
from nbpro_pipeline.sandbox.store import to_minor, to_wire
from nbpro_pipeline.sandbox.tasks import FAILURE_MESSAGES, Phase, SandboxTask

QUEUE_PATH = f"/model/v1/queue/{ODIROUTER_ENDPOINT_ID}"
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
REQUEST_NOT_FOUND = "Request not found"  # the application's 404 detail for an unknown request id

_REFUSALS: dict[str, tuple[int, str, str]] = {
    "disabled": (503, "SERVICE_UNAVAILABLE", "The model API is temporarily unavailable; retry later"),
    "missing": (401, "UNAUTHORIZED", "Missing API key: send 'Authorization: Bearer <key>'"),
    "invalid": (401, "UNAUTHORIZED", "Invalid API key: send 'Authorization: Bearer <key>' with a valid key"),
    "revoked": (401, "UNAUTHORIZED", "This API key was revoked"),
    "expired": (401, "UNAUTHORIZED", "This API key has expired"),
    "scope_denied": (403, "FORBIDDEN", "This API key may not call this model"),
    "rate_limited": (429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded; retry after Retry-After seconds"),
    "concurrency": (429, "RATE_LIMIT_EXCEEDED", "Too many requests in flight; retry after Retry-After seconds"),
}


def gateway_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    request_id = secrets.token_hex(16)
    return json_response(
        {"error": {"code": code, "message": message}, "request_id": request_id},
        status,
        headers={"x-request-id": request_id, **(headers or {})},
    )


def detail_error(status: int, detail: str | list[dict], **extra: str) -> Response:
    return json_response({"detail": detail, **extra}, status)


def _refusal_response(refusal: Refusal) -> Response:
    if refusal.kind == "drop_connection":
        return DroppedConnection()
    if refusal.kind == "http_5xx":
        return gateway_error(refusal.status or 500, "INTERNAL_ERROR", "Internal error; retry the request")
    status, code, message = _REFUSALS[refusal.kind]
    if refusal.detail:
        message = f"{message} ({refusal.detail})"
    headers = {"Retry-After": refusal.retry_after} if refusal.retry_after else None
    return gateway_error(status, code, message, headers)


class OdiRouterApi:
    def __init__(self, runtime: SandboxRuntime) -> None:
        self.rt = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route(QUEUE_PATH, self.submit, methods=["POST"]),
            Route(QUEUE_PATH + "/requests/{request_id}/status", self.status, methods=["GET"]),
            Route(QUEUE_PATH + "/requests/{request_id}/response", self.response, methods=["GET"]),
            Route(QUEUE_PATH + "/requests/{request_id}/cancel", self.cancel, methods=["PUT"]),
        ]

    def fallback_routes(self) -> list[BaseRoute]:
        """The 404 for any other ``/model`` path; mounted after every route (mutation mode's alt paths too)."""
        return [Route("/model/{rest:path}", self.not_found, methods=_ALL_METHODS)]

    def _admit(self, request: Request, digest: str) -> Admitted | Response:
        admission = self.rt.admit(ODIROUTER, request.headers.get("authorization"), digest, time.time(), None)
        if isinstance(admission, Refusal):
            return _refusal_response(admission)
        return admission

    def _invalid(self, message: str, loc: tuple[str | int, ...] = (), exc: ValidationError | None = None) -> Response:
        """A validation 422, its ``detail`` a string or FastAPI's issue list (``wire.odirouter_422_detail``)."""
        return detail_error(422, wire_shapes.odirouter_422_detail(self.rt.config.wire, message, loc, exc))

    def _urls(self, request: Request, request_id: str) -> dict[str, str]:
        prefix = f"{base_url(request)}{QUEUE_PATH}/requests/{request_id}"
        return {
            "response_url": prefix + "/response",
            "status_url": prefix + "/status",
            "cancel_url": prefix + "/cancel",
        }

    # --- submit ----------------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        body = await request.body()
        admitted = self._admit(request, body_digest(body))
        if isinstance(admitted, Response):
            return admitted
        submit = self._parse_submit(body)
        if isinstance(submit, Response):
            return submit
        resolution = submit.effective_resolution()
        price = to_minor(ODIROUTER, self.rt.config.billing.odirouter_usd_per_image[resolution])
        refused = self._refusal(admitted.now, price)
        if refused is not None:
            return refused
        return self._start_task(request, admitted, submit, price)

    def _parse_submit(self, body: bytes) -> OdiSubmitRequest | Response:
        """The submit from its body, or the 422 that says what is wrong with it."""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._invalid(f"Invalid JSON body: {exc}")
        if not isinstance(payload, dict):
            return self._invalid("The request body must be a JSON object of model parameters")
        try:
            submit = OdiSubmitRequest.model_validate(payload)
        except ValidationError as exc:
            return self._invalid(describe_validation_error(exc), exc=exc)
        if submit.resolution and submit.image_size and submit.resolution != submit.image_size:
            return self._invalid(
                f"resolution ({submit.resolution.value}) and image_size ({submit.image_size.value}) disagree; "
                "send only one of them",
                loc=("resolution",),
            )
        for i, url in enumerate(submit.image_urls or []):
            if not url.startswith(("http://", "https://", "data:image/")):
                return self._invalid(f"image_urls[{i}]: must be an http(s) URL or a data:image URI", ("image_urls", i))
        return submit

    def _refusal(self, now: float, price: int) -> Response | None:
        """A submit refused before any task is made: the account is full (429) or its balance, less what
        running requests hold, does not cover ``price`` (402)."""
        refusal = self.rt.concurrency_refusal(ODIROUTER, now)
        if refusal is not None:
            return _refusal_response(refusal)
        available = self.rt.store.balance(ODIROUTER) - self.rt.held(ODIROUTER)
        if available < price:
            return gateway_error(
                402,
                "INSUFFICIENT_BALANCE",
                f"Insufficient balance: ${to_wire(ODIROUTER, available):.2f} available after "
                f"{self.rt.active_count(ODIROUTER)} running requests, this request needs "
                f"${to_wire(ODIROUTER, price):.2f}; top up and retry",
            )
        return None

    def _start_task(self, request: Request, admitted: Admitted, submit: OdiSubmitRequest, price: int) -> Response:
        """Queue the task and answer with its id, URLs and queue position, as the wire knobs say."""
        now, resolution = admitted.now, submit.effective_resolution()
        aspect = submit.effective_aspect_ratio()
        if aspect is None:
            first = (submit.image_urls or [None])[0]
            size = self.rt.known_image_size(first, now) if first else None
            aspect = nearest_aspect_ratio(*size) if size else AspectRatio.R1_1
        modalities = submit.response_modalities
        plan = self.rt.plan(ODIROUTER, admitted.draw, resolution.value)
        task = self.rt.new_task(
            ODIROUTER,
            plan,
            now,
            prompt=submit.prompt,
            aspect_ratio=aspect.value,
            requested_aspect_ratio=submit.aspect_ratio,
            resolution=resolution.value,
            output_format="png",
            price=price,
            text_output=modalities is None or "Text" in modalities,
            reference_urls=list(submit.image_urls or []),
        )
        self.rt.register(task)
        if plan.drop_after_processing:
            return DroppedConnection()
        return json_response(
            {
                "request_id": task.id,
                **self._urls(request, task.id),
                "queue_position": self.rt.queue_position(task, now),
            },
            self.rt.config.wire.odirouter_create_status,
        )

    # --- status / response / cancel --------------------------------------------------------------

    def _lookup(self, request: Request) -> tuple[Admitted, SandboxTask | None] | Response:
        admitted = self._admit(request, route_digest(request.method, request.url.path))
        if isinstance(admitted, Response):
            return admitted
        return admitted, self.rt.task(ODIROUTER, request.path_params["request_id"])

    def _status_json(self, task: SandboxTask, request: Request, now: float) -> dict:
        phase = task.phase(now)
        out: dict = {
            "status": "IN_QUEUE"
            if phase is Phase.QUEUED
            else "IN_PROGRESS"
            if phase is Phase.PROCESSING
            else "COMPLETED",
            "request_id": task.id,
            "response_url": self._urls(request, task.id)["response_url"],
        }
        if phase is Phase.QUEUED:
            out["queue_position"] = self.rt.queue_position(task, now)
        if phase.terminal:
            end = task.finishes_at or now
            inference = round(max(0.0, end - task.started_at), 3)
            if phase is Phase.CANCELED and task.canceled_while == Phase.PROCESSING.value:
                inference = max(inference, 0.001)  # it ran (and is billed): never report 0 for it
            out["metrics"] = {"inference_time": inference}
        error_type = self._error_type(task, phase)
        out["error"] = FAILURE_MESSAGES[error_type] if error_type else None
        out["error_type"] = error_type
        return out

    @staticmethod
    def _error_type(task: SandboxTask, phase: Phase) -> str | None:
        if phase is Phase.CANCELED:
            return "CANCELED"
        if phase is Phase.FAILED:
            return task.failure
        return None

    async def status(self, request: Request) -> Response:
        found = self._lookup(request)
        if isinstance(found, Response):
            return found
        admitted, task = found
        if task is None:
            return detail_error(404, REQUEST_NOT_FOUND)
        return json_response(self._status_json(task, request, admitted.now))

    async def response(self, request: Request) -> Response:
        found = self._lookup(request)
        if isinstance(found, Response):
            return found
        admitted, task = found
        if task is None:
            return detail_error(404, REQUEST_NOT_FOUND)
        now = admitted.now
        phase = task.phase(now)
        if not phase.terminal:
            return json_response(self._status_json(task, request, now), 202)
        error_type = self._error_type(task, phase)
        if error_type:
            return detail_error(400, FAILURE_MESSAGES[error_type], error_type=error_type)
        data = await self.rt.image_bytes(task)
        width, height = task.served_size
        url = self.rt.result_urls(task, base_url(request), now)[0]
        outputs: list[dict] = []
        if task.text_output:
            outputs.append({"type": "text", "text": f"Here is the image you asked for: {task.prompt[:200]}"})
        outputs.append(
            {
                "type": "image",
                "url": url,
                "content_type": "image/png",
                "file_name": f"{task.id}_0.png",
                "file_size": len(data),
                "width": width,
                "height": height,
            }
        )
        body = {
            "request_id": task.id,
            "outputs": outputs,
            "metadata": {
                "model": ODIROUTER_ENDPOINT_ID,
                "aspect_ratio": task.aspect_ratio,
                "resolution": task.resolution,
                "num_images": 1,
                "inference_time": round(task.processing_s, 3),
                "queue_time": round(task.queue_s, 3),
            },
        }
        return json_response(wire_shapes.odirouter_result(self.rt.config.wire, body))

    async def cancel(self, request: Request) -> Response:
        found = self._lookup(request)
        if isinstance(found, Response):
            return found
        admitted, task = found
        if task is None:
            return json_response({"status": "NOT_FOUND"}, 404)
        if not self.rt.cancel(task, admitted.now):
            return json_response({"status": "ALREADY_COMPLETED"}, 400)
        return json_response({"status": "CANCELLATION_REQUESTED"}, 202)

    async def not_found(self, request: Request) -> Response:
        return detail_error(404, f"Not Found: {request.method} {request.url.path}")
