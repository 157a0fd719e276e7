"""Reading whatever plausible answer a provider sends into the small vocabulary the engine speaks.

Providers spell states in any casing and synonym, put the image under many keys or inline as a
``data:`` URI, send numbers as strings, leave fields out and add others (providers.md section 4). The
clients' normalisers call these helpers, so tolerance is one design rather than a list of shapes: an
unmapped word is ``UNKNOWN`` (never terminal, never free), an image is looked for wherever a plausible
answer puts it, and a value that is not a number is no amount.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from collections.abc import Iterator, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.models.common import TaskState
from nbpro_pipeline.providers.base import ResultImage, TaskUrls

_Q, _R, _S, _F = TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED, TaskState.FAILED
# Compared after ``word_key``: lower case, spaces and hyphens as underscores.
STATE_WORDS: dict[str, TaskState] = {
    **dict.fromkeys(("queued", "pending", "waiting", "in_queue", "submitted", "created", "accepted", "enqueued"), _Q),
    **dict.fromkeys(("processing", "running", "in_progress", "started", "generating", "active"), _R),
    **dict.fromkeys(("succeeded", "success", "successful", "completed", "complete", "done", "finished"), _S),
    **dict.fromkeys(("failed", "failure", "error", "errored", "rejected", "expired", "timeout", "timed_out"), _F),
    **dict.fromkeys(("cancelled", "canceled", "aborted"), _F),
}
CANCELLED_WORDS = frozenset({"cancelled", "canceled", "aborted"})

# Keys under which a plausible answer puts its image(s), most specific first.
IMAGE_KEYS = (
    "primary_url", "images", "image", "outputs", "output", "result", "results", "urls", "url", "uri",
    "image_url", "file_url", "download_url", "signed_url", "artifacts", "files", "file", "data", "href",
    "src", "b64_json", "base64", "image_base64",
)  # fmt: skip
_URL_FIELDS = ("url", "uri", "href", "src", "image_url", "file_url", "download_url", "signed_url")
_B64_FIELDS = ("b64_json", "base64", "image_base64")
# Never an output image: our own request echoed back, links to follow, previews, error text.
SKIP_KEYS = frozenset(
    {
        "status_url", "response_url", "cancel_url", "webhook_url", "logs_url", "logs", "input", "inputs",
        "request", "params", "parameters", "arguments", "image_urls", "reference_images", "referencemediaitems",
        "references", "reference_urls", "prompt", "error", "errors", "detail", "thumbnail", "thumbnail_url",
        "thumbnails", "preview", "preview_url", "previews",
    }
)  # fmt: skip
_NON_IMAGE_TYPES = ("text", "video", "audio", "json")
# An image object's own word on whether it is the result (Gemini marks interim images ``thought``).
_FINAL_FLAGS = ("final", "is_final")
_DRAFT_FLAGS = ("draft", "is_draft", "thought", "interim")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_MAX_DEPTH = 8
_MAX_NODES = 5000
ID_KEYS = ("id", "task_id", "taskId", "request_id", "requestId", "generation_id", "generationId", "job_id", "uuid")
ID_CONTAINERS = ("data", "task", "generation", "job", "result", "request")
# Ids go into URL paths: anything else (a slash, "..", a space) is refused rather than trusted.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,199}$")
# Where an answer names the model that ran the task, and its version; compared after ``word_key``.
MODEL_KEYS = ("model", "model_id", "modelid", "model_name", "served_model", "model_used")
MODEL_VERSION_KEYS = ("model_version", "modelversion", "version")
# A model id or version lands in XMP, the ledger and FOCUS: the alphabet of ids (``google/gemini-3-pro``,
# ``fal-ai/nano-banana-pro``, ``v2@001``) and at most 128 characters; anything else is not believed.
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")
_SEPARATORS = re.compile(r"[\s\-]+")
_CACHED_WORD = 64  # characters: an answer's keys and status words come from a small vocabulary


def word_key(word: Any) -> str:
    text = str(word)
    # every key of every answer goes through here, and the same few words come back on every poll
    return _word_key(text) if len(text) <= _CACHED_WORD else _SEPARATORS.sub("_", text.strip().lower())


@functools.lru_cache(maxsize=4096)
def _word_key(text: str) -> str:
    return _SEPARATORS.sub("_", text.strip().lower())


def read_state(word: Any) -> TaskState:
    """A status word in any casing or common synonym; anything else (or nothing) is ``UNKNOWN``."""
    if not isinstance(word, str) or not word.strip():
        return TaskState.UNKNOWN
    return STATE_WORDS.get(word_key(word), TaskState.UNKNOWN)


def is_cancelled_word(word: Any) -> bool:
    return isinstance(word, str) and word_key(word) in CANCELLED_WORDS


def read_decimal(value: Any) -> Decimal | None:
    """A number given as a number or as text (``8``, ``"8"``, ``"8.00"``, ``"$0.15"``); else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip().lstrip("$").replace(",", "")
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def read_int(value: Any, *, limit: int = 2**53) -> int | None:
    """A whole number within ``±limit`` given as a number or text; else None (absurd values included)."""
    number = read_decimal(value)
    if number is None or number != number.to_integral_value() or abs(number) > limit:
        return None
    return int(number)


def read_float(value: Any) -> float | None:
    number = read_decimal(value)
    return float(number) if number is not None and abs(number) < Decimal(10) ** 12 else None


def unwrap(body: Any, wanted: Sequence[str]) -> Any:
    """The object that holds any of ``wanted``: the body itself, or one of the usual envelopes around it
    (``{"data": {...}}``, ``{"task": {...}}``)."""
    if not isinstance(body, dict):
        return body
    if any(k in body for k in wanted):
        return body
    for key in ID_CONTAINERS:
        inner = body.get(key)
        if isinstance(inner, dict) and any(k in inner for k in wanted):
            return inner
    return body


def find_task_id(body: Any) -> str | None:
    """The task id a create or status answer carries, under any usual key or envelope."""
    holder = unwrap(body, ID_KEYS)
    if not isinstance(holder, dict):
        return None
    for key in ID_KEYS:
        value = holder.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def safe_task_id(task_id: str) -> bool:
    """Whether ``task_id`` may go into a URL path (it is quoted too, but ``..`` or ``/`` never pass)."""
    return bool(_SAFE_ID.match(task_id)) and task_id not in (".", "..")


def path_id(task_id: str) -> str:
    return quote(task_id, safe="")


class ServedModel(BaseModel):
    """The model an answer says ran the task, and its version, each None when it says nothing believable."""

    model_config = ConfigDict(frozen=True)

    model_id: str | None = None
    version: str | None = None


def read_model_id(value: Any) -> str | None:
    """A model id or version as a provider states it (text or a number), or None when it is not one."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if _MODEL_ID.match(value) else None


def find_served_model(body: Any, containers: Sequence[str] = ()) -> ServedModel:
    """The model named by ``body`` (a task or result object) or by one of its ``containers`` (fal's
    ``metadata``), under any usual key; ``"model"`` may be an object of its own (``{id, version}``).
    A bare ``version`` counts only inside a container or a model object, where it cannot be the API's."""
    if not isinstance(body, dict):
        return ServedModel()
    found = _model_in(body, bare_version=False)
    for key in containers:
        inner = body.get(key)
        if isinstance(inner, dict):
            more = _model_in(inner, bare_version=True)
            found = ServedModel(model_id=found.model_id or more.model_id, version=found.version or more.version)
    return found


def _model_in(holder: dict[str, Any], *, bare_version: bool) -> ServedModel:
    fields = _fields(holder)
    version = _first_id(fields, MODEL_VERSION_KEYS if bare_version else MODEL_VERSION_KEYS[:-1])
    model_id = _first_id(fields, MODEL_KEYS)
    objects = [fields[k] for k in MODEL_KEYS if isinstance(fields.get(k), dict)]
    if model_id is None and objects:  # {"model": {"id": ..., "version": ...}}
        inner = _fields(objects[0])
        model_id = _first_id(inner, ("id", "name", *MODEL_KEYS))
        version = _first_id(inner, MODEL_VERSION_KEYS) or version
    return ServedModel(model_id=model_id, version=version)


def _fields(holder: dict[str, Any]) -> dict[str, Any]:
    return {word_key(k): v for k, v in holder.items() if isinstance(k, str)}


def _first_id(fields: dict[str, Any], keys: Sequence[str]) -> str | None:
    return next((v for k in keys if (v := read_model_id(fields.get(k))) is not None), None)


def find_urls(body: Any, location: str | None = None) -> TaskUrls:
    """The URLs a provider returned for following a task (fal's ``status_url`` etc.), and a ``Location``
    header as the status URL when the body names none."""
    holder = unwrap(body, ("status_url", "response_url", "cancel_url"))
    get = holder.get if isinstance(holder, dict) else (lambda _k: None)

    def url(key: str) -> str | None:
        value = get(key)
        return value if isinstance(value, str) and value.startswith(("http://", "https://", "/")) else None

    return TaskUrls(status=url("status_url") or location, response=url("response_url"), cancel=url("cancel_url"))


def parse_json(content: bytes) -> Any:
    """The body as JSON, or None when it is not JSON at all."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


# -- images ---------------------------------------------------------------------------------------


def find_images(body: Any, documented: Sequence[Sequence[str]] = ()) -> list[ResultImage]:
    """Every output image an answer names: under a ``documented`` path first; else wherever a plausible
    answer puts one (image objects or URL strings under the usual keys, bare lists, ``data:`` URIs,
    base64 fields). In the order given, duplicates dropped."""
    for path in documented:
        found = _unique(_walk(_at(body, path), imageish=True, depth=0, budget=[_MAX_NODES]))
        if found:
            return found
    # a body that is a list or a string is the result itself; an object is read by its keys
    return _unique(_walk(body, imageish=not isinstance(body, dict), depth=0, budget=[_MAX_NODES]))


def final_image(images: Sequence[ResultImage]) -> int:
    """Index of the answer's result: the one the provider's rule marked final (its package's reader marks
    it), else the last not said to be a draft, else the last. The others are drafts."""
    for i, image in enumerate(images):
        if image.final:
            return i
    kept = [i for i, image in enumerate(images) if not image.draft]
    return kept[-1] if kept else len(images) - 1


def _at(body: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def _unique(images: Iterator[ResultImage]) -> list[ResultImage]:
    seen: dict[str, ResultImage] = {}
    for image in images:
        seen.setdefault(image.url, image)
    return list(seen.values())


def _walk(node: Any, *, imageish: bool, depth: int, budget: list[int]) -> Iterator[ResultImage]:
    budget[0] -= 1
    if depth > _MAX_DEPTH or budget[0] < 0:
        return
    if isinstance(node, str):
        image = _image_from_text(node, imageish)
        if image is not None:
            yield image
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, imageish=imageish, depth=depth + 1, budget=budget)
    elif isinstance(node, dict):
        image = image_object(node)
        if image is not None:
            yield image
            return
        if not _declares_non_image(node):
            yield from _by_key(node, imageish=imageish, depth=depth, budget=budget)


def _by_key(node: dict[str, Any], *, imageish: bool, depth: int, budget: list[int]) -> Iterator[ResultImage]:
    """The images under the most telling key that has any (``result`` before a bare ``url``), so a link
    beside the output (a task's web page) is never taken for it. In a task object (it has a status) a
    plain URL field counts only when it names an image file."""
    keys = {word_key(k): k for k in node if isinstance(k, str)}
    task_object = "status" in keys or "state" in keys
    ordered = [k for k in IMAGE_KEYS if k in keys] + [k for k in keys if k not in IMAGE_KEYS]
    for key in ordered:
        if key in SKIP_KEYS:
            continue
        child = node[keys[key]]
        if task_object and key in _URL_FIELDS and isinstance(child, str) and not _names_image_file(child):
            continue
        found = list(_walk(child, imageish=imageish or key in IMAGE_KEYS, depth=depth + 1, budget=budget))
        if found:
            yield from found
            return


def _names_image_file(text: str) -> bool:
    return text.startswith("data:") or urlsplit(text).path.lower().endswith(_IMAGE_SUFFIXES)


def _image_from_text(text: str, imageish: bool) -> ResultImage | None:
    if text.startswith("data:"):
        return ResultImage(url=text) if _is_image_data_uri(text) else None
    if imageish and text.startswith(("http://", "https://")):
        return ResultImage(url=text)
    return None


def image_object(node: dict[str, Any]) -> ResultImage | None:
    """``{url, content_type, width, height, file_size}`` or a base64 field, under any usual names."""
    if _declares_non_image(node):
        return None
    fields = {word_key(k): v for k, v in node.items() if isinstance(k, str)}
    if "status" in fields or "state" in fields:  # a task object with a link to a page, not an image
        return None
    url = next((fields[k] for k in _URL_FIELDS if isinstance(fields.get(k), str)), None)
    if url is not None and not (url.startswith(("http://", "https://")) or _is_image_data_uri(url)):
        url = None
    if url is None:
        raw = next((fields[k] for k in _B64_FIELDS if isinstance(fields.get(k), str)), None)
        url = _b64_as_data_uri(raw) if raw else None
    if url is None:
        return None
    content_type = fields.get("content_type") or fields.get("mime_type") or fields.get("mimetype")
    return ResultImage(
        final=any(fields.get(k) is True for k in _FINAL_FLAGS),
        draft=any(fields.get(k) is True for k in _DRAFT_FLAGS) or any(fields.get(k) is False for k in _FINAL_FLAGS),
        url=url,
        content_type=content_type if isinstance(content_type, str) else None,
        width=read_int(fields.get("width"), limit=1_000_000),
        height=read_int(fields.get("height"), limit=1_000_000),
        file_size=read_int(fields.get("file_size") or fields.get("size")),
    )


def _declares_non_image(node: dict[str, Any]) -> bool:
    kind = node.get("type") or node.get("content_type") or node.get("mime_type") or node.get("kind")
    return isinstance(kind, str) and word_key(kind).startswith(_NON_IMAGE_TYPES)


def _is_image_data_uri(text: str) -> bool:
    head = text[:100].lower()
    return head.startswith(("data:image/", "data:application/octet-stream")) and ";base64," in head


def _b64_as_data_uri(raw: str) -> str | None:
    raw = raw.strip()
    if raw.startswith("data:"):
        return raw if _is_image_data_uri(raw) else None
    return "data:application/octet-stream;base64," + raw if len(raw) >= 16 else None


class DataUriTooLarge(ValueError):
    pass


def decode_data_uri(uri: str, max_bytes: int) -> tuple[bytes, str | None]:
    """The bytes and declared type of a base64 ``data:`` URI; refused before decoding when the encoded
    length already says it holds more than ``max_bytes``."""
    header, _, payload = uri.partition(",")
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise DataUriTooLarge(f"inline image of about {len(payload) * 3 // 4} bytes exceeds the cap of {max_bytes}")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    kind = header[5:].split(";")[0] or None
    return data, kind
