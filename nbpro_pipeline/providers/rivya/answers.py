"""Rivya's answers (create and task objects) read into the engine's vocabulary, whatever plausible shape
they come in. ``models.rivya`` stays the documented contract (the sandbox serves it); this reads what
a real server may send instead: any status spelling, numbers as text, missing fields, the task under
an envelope, the image anywhere a plausible answer puts it, the id only in a ``Location`` header.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nbpro_pipeline.models.common import TaskState
from nbpro_pipeline.providers.base import ResultImage, TaskSnapshot
from nbpro_pipeline.providers.reading import (
    find_images,
    find_served_model,
    find_task_id,
    find_urls,
    is_cancelled_word,
    read_decimal,
    read_int,
    read_state,
    unwrap,
    word_key,
)
from nbpro_pipeline.providers.rivya.traits import NAME as PROVIDER

# The documented result: ``primary_url`` is the image (so it is the final one), ``urls`` all of them.
RESULT_PATHS = (("result", "primary_url"), ("result", "urls"), ("result",))
_TASK_KEYS = ("id", "status", "state", "result", "reserved_credits")
_CREDIT_LIMIT = 10**9  # a credits column beyond this is no count; the stated cost still flags it


def unwrap_task(body: Any) -> Any:
    """The task object itself, also when it comes inside an envelope such as ``{"data": {...}}``."""
    return unwrap(body, _TASK_KEYS)


def status_word(holder: Any) -> Any:
    return holder.get("status", holder.get("state")) if isinstance(holder, dict) else None


def read_task(body: Any, *, task_id: str | None = None, location: str | None = None) -> TaskSnapshot | None:
    """The task a create or poll answered with, or None when the body names no task at all. ``task_id``
    (a poll's) wins over what the body says; a create's id may come from the ``Location`` header."""
    holder = unwrap_task(body)
    if not isinstance(holder, dict):
        return None
    found = task_id or find_task_id(holder) or _id_from_location(location)
    if found is None:
        return None
    word = status_word(holder)
    state = read_state(word)
    error_code, error_message = _error(holder.get("error"), state, word)
    reserved = read_decimal(holder.get("reserved_credits"))
    served = find_served_model(holder)  # the documented ``model``, or wherever a plausible answer names it
    final = read_decimal(holder.get("final_credits")) if state.terminal else None
    return TaskSnapshot(
        provider=PROVIDER,
        task_id=found,
        state=state,
        images=tuple(_images(holder)) if state is TaskState.SUCCEEDED else (),
        error_code=error_code,
        error_message=error_message,
        credits_reserved=_count(reserved),
        credits_final=_count(final),
        stated_cost=_stated(state, reserved, final),
        run_s=_run_s(holder) if state.terminal else None,
        model_served=served.model_id,
        model_version=served.version,
        urls=find_urls(holder, location),
    )


def _stated(state: TaskState, reserved, final):
    """What Rivya says the task costs: credits held while it runs, its final credits once settled (on a
    success the docs say final equals reserved, so a missing final reads as the reservation)."""
    if not state.terminal:
        return reserved
    if final is not None:
        return final
    return reserved if state is TaskState.SUCCEEDED else None


def _count(value) -> int | None:
    return read_int(value, limit=_CREDIT_LIMIT) if value is not None else None


def _images(holder: dict[str, Any]) -> list[ResultImage]:
    images = find_images(holder, RESULT_PATHS)
    result = holder.get("result")
    primary = result.get("primary_url") if isinstance(result, dict) else None
    return [i.model_copy(update={"final": True}) if i.url == primary else i for i in images]


def _error(error: Any, state: TaskState, word: Any) -> tuple[str | None, str | None]:
    """Code and message of a failed task's ``error`` (an object, a string, or missing)."""
    if state is not TaskState.FAILED:
        return None, None
    default = "cancelled" if is_cancelled_word(word) else "generation_failed"
    if isinstance(error, dict):
        fields = {word_key(k): v for k, v in error.items() if isinstance(k, str)}
        code = next((fields[k] for k in ("code", "type", "error_code") if isinstance(fields.get(k), str)), default)
        message = next((fields[k] for k in ("message", "msg", "detail") if isinstance(fields.get(k), str)), "")
        return code, message[:1000]
    if isinstance(error, str):
        return default, error[:1000]
    return default, None


def _run_s(holder: dict[str, Any]) -> float | None:
    """Rivya stamps the terminal transition: seconds from creation to the end, when both read."""
    created, updated = _time(holder.get("created_at")), _time(holder.get("updated_at"))
    if created is None or updated is None or created.tzinfo is None or updated.tzinfo is None:
        return None
    seconds = (updated - created).total_seconds()
    return seconds if 0 <= seconds < 86_400 else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _id_from_location(location: str | None) -> str | None:
    if not location:
        return None
    last = location.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return last or None
