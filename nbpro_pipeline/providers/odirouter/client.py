"""Async client for OdiRouter's fal-style queue (endpoint ``nano_banana_pro``).

OdiRouter has no idempotency key, so a submit is repeated only when nothing can have been created:
a connection that never opened, or a 429/5xx answer to the submit itself. Anything else after the
bytes left (a read timeout, a dropped connection) raises ``SubmitOutcomeUnknown`` for the engine to
journal, because a blind retry could pay twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

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
    TaskUrls,
    as_handle,
)
from nbpro_pipeline.providers.errors import (
    InvalidRequestError,
    ProviderError,
    SubmitOutcomeUnknown,
    UnreadableResultError,
    UnsupportedOperationError,
)
from nbpro_pipeline.providers.http import HttpProviderClient, json_or_none
from nbpro_pipeline.providers.odirouter.answers import (
    CANCELED,
    billable_units,
    failure_from_detail,
    read_result,
    read_status,
    read_submitted,
    status_word,
)
from nbpro_pipeline.providers.odirouter.traits import ENDPOINT_ID, NAME, TRAITS
from nbpro_pipeline.providers.odirouter.wire import OdiDetailError, OdiGatewayError, OdiSubmitRequest
from nbpro_pipeline.providers.reading import parse_json

log = logging.getLogger(__name__)

DEFAULT_ODIROUTER_URL = "https://odirouter.ai/model"
_QUEUE = f"/v1/queue/{ENDPOINT_ID}"


class FailedAtResponse(Exception):
    """The response call said the task failed (fal's 4xx with a ``detail`` after COMPLETED)."""

    def __init__(self, snapshot: TaskSnapshot) -> None:
        super().__init__(snapshot.error_message or snapshot.error_code)
        self.snapshot = snapshot


class OdiRouterClient(HttpProviderClient):
    provider = NAME
    traits = TRAITS

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
            error_type = body.get("error_type")  # fal's failed task answers its response call so
            code = error_type if isinstance(error_type, str) else None
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
        request_id, urls, position = self._read_submitted(response)
        return SubmittedTask(
            provider=self.provider,
            task_id=request_id,
            fingerprint=request.fingerprint(self.provider),
            idempotency_key=None,
            submitted_at=submitted_at,
            attempts=attempts,
            snapshot=TaskSnapshot(
                provider=self.provider, task_id=request_id, state=TaskState.QUEUED, queue_position=position, urls=urls
            ),
            urls=urls,
        )

    def _read_submitted(self, response: httpx.Response) -> tuple[str, TaskUrls, int | None]:
        """Any 2xx naming a request id (in the body, an envelope or ``Location``). Without one a task may
        exist and be billed, but cannot be followed: ``SubmitOutcomeUnknown`` (the engine journals it and
        never resubmits blindly)."""
        request_id, urls, position = read_submitted(parse_json(response.content), response.headers.get("Location"))
        if request_id is None:
            log.warning("odirouter submit answered an unreadable body: %s", self._redact(response.text[:300]))
            raise self._error(
                SubmitOutcomeUnknown,
                f"the submit was answered {response.status_code} without a readable request_id; "
                "a task may have been created and billed",
                status_code=response.status_code,
            )
        return request_id, urls, position

    async def poll(self, task: TaskLike) -> TaskSnapshot:
        handle = as_handle(task)
        path = self._task_path(handle, handle.urls.status, _QUEUE + "/requests/{}/status")
        response, _ = await self._send("GET", path, safe_to_repeat=True)
        body = parse_json(response.content)
        snapshot = read_status(body, handle.task_id)
        if snapshot is None:
            raise self._unreadable(response, handle.task_id, "not a queue status", None)
        snapshot = self.note_state_word(status_word(body), snapshot)
        urls = handle.urls
        if not urls.response and snapshot.urls.response:  # fal's status names the response URL too
            urls = urls.model_copy(update={"response": snapshot.urls.response})
        error = self._redact(snapshot.error_message) if snapshot.error_message else None
        return snapshot.model_copy(update={"urls": urls, "error_message": error})

    async def result(self, handle: TaskHandle) -> TaskSnapshot:
        """The response endpoint, once status says COMPLETED without error: a SUCCEEDED snapshot with
        the images, the cost the provider states and the model it names. A 2xx (not 202) means the task
        completed and is billed, so an answer naming no image raises ``UnreadableResultError`` with the
        raw body and a billed snapshot; a 4xx with a ``detail`` is fal's failure signal."""
        response = await self._response_answer(handle)
        billable = TaskSnapshot(
            provider=self.provider, task_id=handle.task_id, state=TaskState.SUCCEEDED, billed=True, urls=handle.urls
        )
        images, stated, served = read_result(parse_json(response.content))
        units = billable_units(response)
        if not images:
            raise self._unreadable(response, handle.task_id, "no image in the answer", billable)
        return billable.model_copy(
            update={
                "images": tuple(images),
                "stated_cost": stated,
                "billed_units": units,
                "model_served": served.model_id,
                "model_version": served.version,
            }
        )

    async def _response_answer(self, handle: TaskHandle) -> httpx.Response:
        """The response endpoint's 2xx answer; a 202 (the store not there yet) is asked again a few times."""
        path = self._task_path(handle, handle.urls.response, _QUEUE + "/requests/{}/response")
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                response, _ = await self._send("GET", path, safe_to_repeat=True)
            except InvalidRequestError as exc:
                if exc.status_code in (400, 422):
                    raise FailedAtResponse(failure_from_detail(exc.code, exc.message, handle.task_id)) from exc
                raise
            if response.status_code != 202:
                return response
            await asyncio.sleep(self.retry.delay(attempt, None, self._rng))
        raise self._error(ProviderError, f"task {handle.task_id}: the response is still not ready", status_code=202)

    async def _fresh_images(self, snapshot: TaskSnapshot) -> tuple[ResultImage, ...]:
        return (await self.result(TaskHandle(task_id=snapshot.task_id, urls=snapshot.urls))).images

    async def wait(self, task: TaskLike, *, deadline_s: float | None = None) -> TaskSnapshot:
        """As the base class, and on success the response is fetched once, so the snapshot carries the
        images, what the provider says it billed and the pixel sizes it reports. An error there carries
        the status polls made, and an unreadable result the terminal status snapshot (billed)."""
        handle = as_handle(task)
        snapshot = await super().wait(handle, deadline_s=deadline_s)
        if snapshot.state is not TaskState.SUCCEEDED or snapshot.images:
            return snapshot
        try:
            answered = await self.result(TaskHandle(task_id=handle.task_id, urls=snapshot.urls))
        except FailedAtResponse as failed:
            answered = failed.snapshot
        except UnreadableResultError as exc:
            exc.snapshot = snapshot.model_copy(update={"billed": True})
            exc.polls = snapshot.polls
            raise
        except ProviderError as exc:
            exc.polls = snapshot.polls
            raise
        kept = ("polls", "processing_s", "run_s")
        return answered.model_copy(update={k: getattr(snapshot, k) for k in kept})

    async def _on_deadline(
        self, handle: TaskHandle, last: TaskSnapshot, poll: Callable[[], Awaitable[TaskSnapshot]]
    ) -> TaskSnapshot | None:
        """Cancel a task that ran past its deadline; if it finished meanwhile, keep its result.

        After an accepted cancel the status is read once more: the last poll may predate the task's
        move from the queue into processing, and only the provider's own answer says whether the
        cancel is billed. A cancel is only a request, so a task that completed anyway is returned as is.
        """
        outcome = await self.cancel(handle)
        self.counters[f"cancel_{outcome.value.lower()}"] += 1
        if outcome is CancelOutcome.ALREADY_COMPLETED:
            return await poll()
        if outcome is CancelOutcome.REQUESTED:
            after = await poll()
            if after.state.terminal and after.error_code != CANCELED:
                return after
            return last.model_copy(update={"error_code": outcome.value, "billed": after.billed})
        return last.model_copy(update={"error_code": outcome.value})

    async def cancel(self, task: TaskLike) -> CancelOutcome:
        """400 ALREADY_COMPLETED and 404 NOT_FOUND are answers here, not failures."""
        handle = as_handle(task)
        path = self._task_path(handle, handle.urls.cancel, _QUEUE + "/requests/{}/cancel")
        try:
            response, _ = await self._send("PUT", path, safe_to_repeat=True)
        except ProviderError as exc:
            if exc.status_code in (400, 404) and exc.code in ("ALREADY_COMPLETED", "NOT_FOUND"):
                return CancelOutcome(exc.code)
            raise
        word = str(status_word(parse_json(response.content)) or "").strip().upper()
        known = {o.value for o in CancelOutcome}
        return CancelOutcome(word) if word in known else CancelOutcome.REQUESTED  # a 2xx: the request stands

    async def upload_reference(self, source: bytes | Path, *, name: str | None = None) -> ReferenceImage:
        raise self._error(
            UnsupportedOperationError,
            "OdiRouter has no upload API; give references as public http(s) URLs in image_urls",
        )

    async def balance(self) -> Balance:
        raise self._error(UnsupportedOperationError, "OdiRouter publishes no balance endpoint")
