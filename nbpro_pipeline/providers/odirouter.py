"""Async client for OdiRouter's fal-style queue (endpoint ``nano_banana_pro``).

OdiRouter has no idempotency key, so a submit is repeated only when nothing can have been created:
a connection that never opened, or a 429/5xx answer to the submit itself. Anything else after the
bytes left (a read timeout, a dropped connection) raises ``SubmitOutcomeUnknown`` for the engine to
journal, because a blind retry could pay twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from nbpro_pipeline.models.common import ODIROUTER_ENDPOINT_ID, Provider, TaskState
from nbpro_pipeline.models.odirouter import (
    OdiCancelResponse,
    OdiDetailError,
    OdiGatewayError,
    OdiResult,
    OdiStatus,
    OdiSubmitRequest,
    OdiSubmitResponse,
)
from nbpro_pipeline.models.request import GenerationRequest, ReferenceImage
from nbpro_pipeline.providers.base import (
    Balance,
    CancelOutcome,
    ResultImage,
    SubmittedTask,
    TaskSnapshot,
)
from nbpro_pipeline.providers.errors import (
    ProviderError,
    SubmitOutcomeUnknown,
    UnreadableResultError,
    UnsupportedOperationError,
)
from nbpro_pipeline.providers.http import HttpProviderClient, first_problem, json_or_none
from nbpro_pipeline.providers.traits import ODIROUTER_TRAITS

log = logging.getLogger(__name__)

DEFAULT_ODIROUTER_URL = "https://odirouter.ai/model"
_QUEUE = f"/v1/queue/{ODIROUTER_ENDPOINT_ID}"


class OdiRouterClient(HttpProviderClient):
    provider = Provider.ODIROUTER
    traits = ODIROUTER_TRAITS

    def __init__(self, base_url: str = DEFAULT_ODIROUTER_URL, api_key: str = "", **kw) -> None:
        super().__init__(base_url, api_key, **kw)

    # -- errors -------------------------------------------------------------------------------------
    def _error_from_response(self, response: httpx.Response) -> ProviderError:
        body = json_or_none(response)
        code: str | None = None
        request_id: str | None = None
        message = f"HTTP {response.status_code}"
        if isinstance(body, dict) and "error" in body:
            try:
                gateway = OdiGatewayError.model_validate(body)
                code, request_id = gateway.error.code, gateway.request_id
                message = gateway.error.message or gateway.error.code
            except ValueError:
                message = str(body)[:300]
        elif isinstance(body, dict) and "detail" in body:
            try:
                message = OdiDetailError.model_validate(body).describe()
            except ValueError:
                message = str(body["detail"])[:300]
        elif isinstance(body, dict) and "status" in body:
            code = str(body["status"])
            message = code
        elif body is None and response.content:
            message = f"HTTP {response.status_code}: {response.text[:300]}"
        return self._status_error(response, code, message, request_id)

    # -- tasks --------------------------------------------------------------------------------------
    def wire_request(self, request: GenerationRequest) -> OdiSubmitRequest:
        self._check_locally(request)
        return OdiSubmitRequest(
            prompt=request.prompt,
            image_urls=[r.url for r in request.references] or None,
            aspect_ratio=request.aspect_ratio.value,
            resolution=request.resolution,
            response_modalities=["Image"],  # the pipeline wants images; skip the text part
        )

    async def submit(self, request: GenerationRequest, *, idempotency_key: str | None = None) -> SubmittedTask:
        """``idempotency_key`` is accepted for interface symmetry and ignored: OdiRouter has none."""
        body = self.wire_request(request)
        submitted_at = datetime.now(UTC)
        response, attempts = await self._send(
            "POST", _QUEUE, json=body.model_dump(mode="json", exclude_none=True), safe_to_repeat=False, create=True
        )
        answer = self._read_submitted(response)
        return SubmittedTask(
            provider=self.provider,
            task_id=answer.request_id,
            fingerprint=request.fingerprint(self.provider),
            idempotency_key=None,
            submitted_at=submitted_at,
            attempts=attempts,
            snapshot=TaskSnapshot(
                provider=self.provider,
                task_id=answer.request_id,
                state=TaskState.QUEUED,
                queue_position=answer.queue_position,
            ),
        )

    def _read_submitted(self, response: httpx.Response) -> OdiSubmitResponse:
        """Any 2xx with a ``request_id``. Without one a task may exist and be billed, but cannot be
        followed: ``SubmitOutcomeUnknown`` (the engine journals it and never resubmits blindly)."""
        try:
            return OdiSubmitResponse.model_validate_json(response.content)
        except ValueError:
            log.warning("odirouter submit answered an unreadable body: %s", self._redact(response.text[:300]))
            raise self._error(
                SubmitOutcomeUnknown,
                f"the submit was answered {response.status_code} without a readable request_id; "
                "a task may have been created and billed",
                status_code=response.status_code,
            ) from None

    async def status(self, task_id: str) -> OdiStatus:
        response, _ = await self._send("GET", f"{_QUEUE}/requests/{task_id}/status", safe_to_repeat=True)
        try:
            return OdiStatus.model_validate_json(response.content)
        except ValueError as exc:
            reason = f"not a queue status: {first_problem(exc)}"
            raise self._unreadable(response, task_id, reason, None) from None

    async def poll(self, task_id: str) -> TaskSnapshot:
        status = await self.status(task_id)
        return TaskSnapshot(
            provider=self.provider,
            task_id=status.request_id,
            state=status.state,
            error_code=status.error_type or ("UNKNOWN" if status.error else None),
            error_message=self._redact(status.error) if status.error else None,
            queue_position=status.queue_position,
            billed=_billed(status),
            processing_s=_inference_s(status),
        )

    async def result(self, task_id: str) -> OdiResult:
        """The response endpoint; call only once status says COMPLETED without error.

        It reads the documented ``outputs`` shape and fal's ``images`` shape. Its 2xx answer (not 202)
        means the task completed and is billed, so an answer naming no downloadable image raises
        ``UnreadableResultError`` with the raw body and a SUCCEEDED, billed snapshot.
        """
        response, _ = await self._send("GET", f"{_QUEUE}/requests/{task_id}/response", safe_to_repeat=True)
        if response.status_code == 202:
            raise self._error(ProviderError, f"task {task_id} is not completed yet", status_code=202)
        billable = TaskSnapshot(provider=self.provider, task_id=task_id, state=TaskState.SUCCEEDED, billed=True)
        try:
            result = OdiResult.model_validate_json(response.content)
        except ValueError as exc:
            reason = f"not a result object: {first_problem(exc)}"
            raise self._unreadable(response, task_id, reason, billable) from None
        if not any(image.usable for image in result.images):
            reason = (
                "neither 'outputs' nor 'images'"
                if result.shape == "unknown"
                else f"{result.shape} shape without a downloadable image URL"
            )
            raise self._unreadable(response, task_id, reason, billable)
        return result

    async def _fresh_images(self, task_id: str) -> tuple[ResultImage, ...]:
        result = await self.result(task_id)
        return tuple(
            ResultImage(url=o.url, content_type=o.content_type, width=o.width, height=o.height, file_size=o.file_size)
            for o in result.images
            if o.usable
        )

    async def wait(self, task_id: str, *, deadline_s: float | None = None) -> TaskSnapshot:
        """As the base class, and on success the result's image list is fetched once, so the snapshot
        carries the URLs and the pixel sizes the provider reports. An error there carries the status
        polls made, and an unreadable result the terminal status snapshot (billed)."""
        snapshot = await super().wait(task_id, deadline_s=deadline_s)
        if snapshot.state is TaskState.SUCCEEDED and not snapshot.images:
            try:
                images = await self._fresh_images(task_id)
            except UnreadableResultError as exc:
                exc.snapshot = snapshot.model_copy(update={"billed": True})
                exc.polls = snapshot.polls
                raise
            except ProviderError as exc:
                exc.polls = snapshot.polls
                raise
            snapshot = snapshot.model_copy(update={"images": images})
        return snapshot

    async def _on_deadline(
        self, task_id: str, last: TaskSnapshot, poll: Callable[[], Awaitable[TaskSnapshot]]
    ) -> TaskSnapshot | None:
        """Cancel a task that ran past its deadline; if it finished meanwhile, keep its result.

        After an accepted cancel the status is read once more: the last poll may predate the task's
        move from the queue into processing, and only the provider's own answer says whether the
        cancel is billed. A cancel is only a request, so a task that completed anyway is returned as is.
        """
        outcome = await self.cancel(task_id)
        self.counters[f"cancel_{outcome.value.lower()}"] += 1
        if outcome is CancelOutcome.ALREADY_COMPLETED:
            return await poll()
        if outcome is CancelOutcome.REQUESTED:
            after = await poll()
            if after.state.terminal and after.error_code != "CANCELED":
                return after
            return last.model_copy(update={"error_code": outcome.value, "billed": after.billed})
        return last.model_copy(update={"error_code": outcome.value})

    async def cancel(self, task_id: str) -> CancelOutcome:
        """400 ALREADY_COMPLETED and 404 NOT_FOUND are answers here, not failures."""
        path = f"{_QUEUE}/requests/{task_id}/cancel"
        try:
            response, _ = await self._send("PUT", path, safe_to_repeat=True)
            return CancelOutcome(self._parse(OdiCancelResponse, response).status)
        except ProviderError as exc:
            if exc.status_code in (400, 404) and exc.code in ("ALREADY_COMPLETED", "NOT_FOUND"):
                return CancelOutcome(exc.code)
            raise

    async def upload_reference(self, source: bytes | Path, *, name: str | None = None) -> ReferenceImage:
        raise self._error(
            UnsupportedOperationError,
            "OdiRouter has no upload API; give references as public http(s) URLs in image_urls",
        )

    async def balance(self) -> Balance:
        raise self._error(UnsupportedOperationError, "OdiRouter publishes no balance endpoint")


def _inference_s(status: OdiStatus) -> float | None:
    """The provider's own processing time of a finished task (fal's ``metrics.inference_time``): it
    leaves out the time queued, which is what the admission's estimate of tasks still *running* wants
    (``run_times``), and, unlike our poll window, it is exact (a task found done at its first poll
    would be learned as taking that long, and the estimate drift later and later)."""
    if not status.state.terminal:
        return None
    inference = (status.metrics or {}).get("inference_time")
    return float(inference) if isinstance(inference, int | float) and inference > 0 else None


def _billed(status: OdiStatus) -> bool | None:
    """Does OdiRouter bill this task? Success yes, failure no; a cancel only if the task had started
    processing, which the status shows as a non-zero ``metrics.inference_time`` (None when absent)."""
    state = status.state
    if state is TaskState.SUCCEEDED:
        return True
    if state is not TaskState.FAILED:
        return None
    if status.error_type != "CANCELED":
        return False
    inference = (status.metrics or {}).get("inference_time")
    return inference > 0 if isinstance(inference, int | float) else None
