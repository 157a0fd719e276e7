"""OdiRouter's answers (submit, status, response) read into the engine's vocabulary, whatever plausible
shape a fal-style queue sends: any status spelling (``IN_PROGRESS``, ``running``, ``COMPLETED``,
``succeeded``), a failure as ``COMPLETED`` with an error or as its own word, numbers as text, the image
under ``outputs``, ``images`` or anywhere else a plausible answer puts it, inline or by URL, and what
the provider says it billed (a cost field or fal's ``x-fal-billable-units`` header).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from nbpro_pipeline.models.common import TaskState
from nbpro_pipeline.providers.base import ResultImage, TaskSnapshot, TaskUrls
from nbpro_pipeline.providers.odirouter.traits import NAME as PROVIDER
from nbpro_pipeline.providers.reading import (
    ServedModel,
    find_images,
    find_served_model,
    find_task_id,
    find_urls,
    is_cancelled_word,
    read_decimal,
    read_float,
    read_int,
    read_state,
    unwrap,
    word_key,
)

CANCELED = "CANCELED"
RESULT_PATHS = (("outputs",), ("images",))
_STATUS_KEYS = ("status", "state", "request_id")
_COST_KEYS = ("cost", "cost_usd", "price", "amount", "billed", "billed_usd", "charge", "total_cost")
_COST_CONTAINERS = ("billing", "usage", "metadata", "cost")
BILLABLE_UNITS_HEADER = "x-fal-billable-units"


def read_submitted(body: Any, location: str | None) -> tuple[str | None, TaskUrls, int | None]:
    """The request id, the URLs to follow and the queue position of a submit's answer."""
    holder = unwrap(body, ("request_id", "status_url"))
    request_id = find_task_id(holder)
    if request_id is None and location:
        request_id = location.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None
    position = read_int(holder.get("queue_position")) if isinstance(holder, dict) else None
    return request_id, find_urls(holder, location), position


def status_word(body: Any) -> Any:
    holder = unwrap(body, _STATUS_KEYS)
    return holder.get("status", holder.get("state")) if isinstance(holder, dict) else None


def read_status(body: Any, task_id: str) -> TaskSnapshot | None:
    """A status answer as a snapshot, or None when the body is not an object. ``COMPLETED`` is terminal
    for success and failure alike: an error, an error type or a failure word makes it a failure."""
    holder = unwrap(body, _STATUS_KEYS)
    if not isinstance(holder, dict):
        return None
    word = status_word(holder)
    state = read_state(word)
    error_type = holder.get("error_type")
    error = _error_text(holder.get("error"))
    if state is TaskState.SUCCEEDED and (error_type or error):
        state = TaskState.FAILED
    code = None
    if state is TaskState.FAILED:
        code = str(error_type) if error_type else (CANCELED if is_cancelled_word(word) else "UNKNOWN")
    metrics = holder.get("metrics") if isinstance(holder.get("metrics"), dict) else {}
    inference = read_float(metrics.get("inference_time"))
    return TaskSnapshot(
        provider=PROVIDER,
        task_id=task_id,
        state=state,
        error_code=code,
        error_message=error,
        queue_position=read_int(holder.get("queue_position")),
        billed=_billed(state, code, inference),
        processing_s=inference if state.terminal and inference and inference > 0 else None,
        urls=find_urls(holder),
    )


def read_result(body: Any) -> tuple[list[ResultImage], Decimal | None, ServedModel]:
    """The images of a response answer (the last is the final one), the cost the provider states for
    the task (in USD) when it states one, and the model it says it ran (fal-style: in ``metadata``)."""
    images = find_images(body, RESULT_PATHS)
    return images, _stated_cost(body), find_served_model(body, ("metadata",))


def billable_units(response: httpx.Response) -> Decimal | None:
    return read_decimal(response.headers.get(BILLABLE_UNITS_HEADER))


def _stated_cost(body: Any) -> Decimal | None:
    if not isinstance(body, dict):
        return None
    for holder in (body, *(body.get(k) for k in _COST_CONTAINERS)):
        if isinstance(holder, dict):
            fields = {word_key(k): v for k, v in holder.items() if isinstance(k, str)}
            for key in _COST_KEYS:
                amount = read_decimal(fields.get(key))
                if amount is not None:
                    return amount
    return None


def _error_text(error: Any) -> str | None:
    """fal-style services send the error as text, an object or a list; keep it readable as text."""
    if error is None or error == "":
        return None
    return error[:1000] if isinstance(error, str) else json.dumps(error)[:1000]


def _billed(state: TaskState, code: str | None, inference: float | None) -> bool | None:
    """Does OdiRouter bill this task? Success yes, failure no; a cancel only if the task had started
    processing, which the status shows as a non-zero ``metrics.inference_time`` (None when absent)."""
    if state is TaskState.SUCCEEDED:
        return True
    if state is not TaskState.FAILED:
        return None
    if code != CANCELED:
        return False
    return inference > 0 if inference is not None else None


def failure_from_detail(error_type: str | None, message: str, task_id: str) -> TaskSnapshot:
    """fal's other failure signal: the status said COMPLETED, the response call answers 4xx with a
    ``detail``. The task failed, and a failure is not billed."""
    return TaskSnapshot(
        provider=PROVIDER,
        task_id=task_id,
        state=TaskState.FAILED,
        error_code=error_type or "RESPONSE_ERROR",
        error_message=message[:1000],
        billed=False,
    )
