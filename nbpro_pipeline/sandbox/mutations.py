"""Mutation mode's families: plausible ways a real provider presents the same truth (providers.md §4).

Each family is one small function that re-presents a documented answer (an ``Answer``) in place and
says whether it changed anything. None of them may change what is true: the phase a status word
names, what was billed and the image's bytes stay exactly what the sandbox decided; only spelling,
shape, place and timing vary. Every choice comes from a ``random.Random`` seeded by a hash of (seed,
provider, task key, answer kind, n-th answer of that kind), so a failing seed replays the same answers.

Families marked ``planned`` act on a per-task ``MutationPlan`` decided once (which URLs a create
returned, read lag, inline delivery): they apply to every answer of that task so the answers stay
consistent. The others are drawn afresh per answer, with probability ``rate``.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from random import Random
from typing import Any, Literal

from nbpro_pipeline.sandbox.mutation_config import MutationConfig
from nbpro_pipeline.sandbox.odirouter_api import REQUEST_NOT_FOUND
from nbpro_pipeline.sandbox.rivya_api import rivya_error_body
from nbpro_pipeline.sandbox.runtime import RIVYA

Shape = Literal["probe", "rivya_task", "odi_submit", "odi_status", "odi_result", "error", "other"]
Delivery = Literal["url", "blob", "data_uri", "b64_json"]
READS = frozenset({"task", "status", "response"})  # answer kinds that read a task (read lag applies)


@dataclass(frozen=True, slots=True)
class MutationPlan:
    """What is decided once per task, so that its answers agree with each other."""

    alt_urls: bool = False  # OdiRouter: URLs on another path; Rivya: 202 + Location to another path
    minimal_create: bool = False  # the create answer is minimal (OdiRouter: only when no URLs are returned)
    read_lag_s: float = 0.0  # reads answer 404 until this long after the create
    delivery: Delivery = "url"  # how the image is handed over
    relative_location: bool = False  # Rivya's Location header without scheme and host


NO_PLAN = MutationPlan()


def plan_for(config: MutationConfig, provider: str, key: str) -> MutationPlan:
    """The per-task plan: a pure function of (seed, provider, the task's key)."""
    rng = Random(f"{config.seed}|{provider}|{key}|plan")
    on = {name: name in config.families and rng.random() < config.rate for name in _PLANNED_DRAWS}
    alt = on["returned_urls"]
    delivery: Delivery = rng.choice(("blob", "data_uri", "b64_json")) if on["image_location"] else "url"
    return MutationPlan(
        alt_urls=alt,
        minimal_create=(alt or on["minimal_create"]) if provider == RIVYA else on["minimal_create"] and not alt,
        read_lag_s=rng.uniform(config.read_lag_min_s, config.read_lag_max_s) if on["read_lag"] else 0.0,
        delivery=delivery,
        relative_location=rng.random() < 0.5,
    )


_PLANNED_DRAWS = ("returned_urls", "minimal_create", "read_lag", "image_location")  # fixed draw order


@dataclass(frozen=True, slots=True)
class TaskLinks:
    """A task's alternative addresses (``returned_urls``); Rivya uses only ``status_url``/``location``."""

    status_url: str
    location: str = ""
    response_url: str = ""
    cancel_url: str = ""


@dataclass(frozen=True, slots=True)
class Delivered:
    """The task's one image as this task hands it over: a URL, or the CDN's exact bytes inline."""

    url: str
    mime: str
    data: bytes | None = None  # set for data_uri / b64_json delivery
    b64_json: bool = False

    def as_text(self) -> str:
        if self.data is None:
            return self.url
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    def into(self, image: dict[str, Any]) -> dict[str, Any]:
        """``image`` (an image object) pointing at this delivery instead of its ``url``."""
        out = {k: v for k, v in image.items() if k != "url"}
        if self.b64_json and self.data is not None:
            return {"b64_json": base64.b64encode(self.data).decode("ascii"), **out}
        return {"url": self.as_text(), **out}


@dataclass(slots=True)
class Answer:
    """One answer on its way out: the documented version, re-presented in place by the families."""

    provider: str
    kind: str  # create | task | submit | status | response | cancel | other
    shape: Shape
    status: int
    body: Any
    headers: dict[str, str]  # lower-case names
    config: MutationConfig
    plan: MutationPlan = NO_PLAN
    task_id: str | None = None
    age_s: float = math.inf  # seconds since the task's create
    alt_path: bool = False  # asked on the task's alternative path
    links: TaskLinks | None = None
    image: Delivered | None = None
    billed: int | None = None  # minor units the sandbox debited for this task (ledger, net)
    now: float = 0.0
    drawn: frozenset[str] = field(default_factory=frozenset)


# --- planned families --------------------------------------------------------------------------


def minimal_create(answer: Answer, rng: Random) -> bool:
    """Any 2xx, with only the id (and maybe the status), possibly under another key."""
    if not answer.plan.minimal_create or answer.kind not in ("create", "submit") or answer.status >= 300:
        return False
    body = answer.body
    if answer.provider == RIVYA:
        task_id, status = body["id"], body["status"]
        answer.body = rng.choice(
            (
                {"id": task_id, "status": status},
                {"id": task_id},
                {"task_id": task_id, "status": status},
                {"data": {"id": task_id, "status": status}},
            )
        )
    else:
        answer.body = {"request_id": body["request_id"]}
    answer.status = rng.choice((200, 201, 202))
    return True


def returned_urls(answer: Answer, rng: Random) -> bool:
    """fal's rule: only the URLs a create returned are served; Rivya: 202 + ``Location`` elsewhere."""
    links = answer.links
    if not answer.plan.alt_urls or links is None:
        return False
    if answer.shape == "probe":  # OdiRouter's documented paths do not know this task
        if answer.provider == RIVYA or answer.alt_path:
            return False
        answer.status, answer.body = 404, {"detail": REQUEST_NOT_FOUND}
        return True
    if answer.provider == RIVYA:
        if answer.kind != "create" or answer.status >= 300:
            return False
        answer.status = 202
        answer.headers["location"] = links.location
        return True
    body = answer.body
    urls = {"status_url": links.status_url, "response_url": links.response_url, "cancel_url": links.cancel_url}
    changed = False
    for name, url in urls.items():
        if isinstance(body, dict) and name in body:
            body[name] = url
            changed = True
    return changed


def read_lag(answer: Answer, rng: Random) -> bool:
    """An eventually consistent store: a just-created task is not found for a moment."""
    if answer.shape != "probe" or answer.kind not in READS or answer.age_s >= answer.plan.read_lag_s:
        return False
    answer.status = 404
    if answer.provider == RIVYA:
        request_id = f"req_{rng.getrandbits(96):024x}"
        answer.body = rivya_error_body("not_found", f"No generation with id {answer.task_id!r}", request_id)
        answer.headers["x-request-id"] = request_id
    else:
        answer.body = {"detail": REQUEST_NOT_FOUND}
    return True


# --- words and numbers -------------------------------------------------------------------------

_RIVYA_WORDS: dict[str, tuple[str, ...]] = {
    "queued": ("queued", "pending", "waiting", "QUEUED", "Queued", "in_queue"),
    "processing": ("processing", "running", "in_progress", "started", "IN_PROGRESS"),
    "succeeded": ("succeeded", "completed", "success", "done", "SUCCEEDED", "COMPLETED"),
    "failed": ("failed", "error", "FAILED", "failure"),
}
_ODI_WORDS: dict[str, tuple[str, ...]] = {  # keyed by status, or status/outcome for COMPLETED
    "IN_QUEUE": ("in_queue", "queued", "pending", "IN_QUEUE"),
    "IN_PROGRESS": ("in_progress", "running", "processing", "IN_PROGRESS"),
    "COMPLETED/ok": ("completed", "COMPLETED", "succeeded", "done"),
    "COMPLETED/failed": ("COMPLETED", "completed", "FAILED", "failed", "error"),
    "COMPLETED/canceled": ("COMPLETED", "completed", "CANCELED", "canceled", "cancelled", "CANCELLED"),
}
_NOT_TERMINAL = frozenset({"queued", "processing", "IN_QUEUE", "IN_PROGRESS"})
UNDOCUMENTED_WORDS = ("starting", "scheduled", "warming_up", "IN_PROGRESS_RETRYING")


def state_words(answer: Answer, rng: Random) -> bool:
    """The state in any casing or a common synonym; rarely, for a state still running, a word no doc names."""
    body = answer.body
    word = body.get("status") if isinstance(body, dict) else None
    if not isinstance(word, str):
        return False
    key = word
    if answer.provider != RIVYA and word == "COMPLETED":
        error_type = body.get("error_type")
        outcome = "ok" if not error_type else "canceled" if error_type == "CANCELED" else "failed"
        key = f"COMPLETED/{outcome}"
    synonyms = (_RIVYA_WORDS if answer.provider == RIVYA else _ODI_WORDS).get(key)
    if synonyms is None:
        return False
    if word in _NOT_TERMINAL and rng.random() < answer.config.undocumented_words:
        body["status"] = rng.choice(UNDOCUMENTED_WORDS)
    else:
        body["status"] = rng.choice([s for s in synonyms if s != word])
    return True


def number_strings(answer: Answer, rng: Random) -> bool:
    """Numbers as strings (``"8"``, ``"8.00"``) or floats (``8.0``); the value never changes."""
    body = answer.body
    if not isinstance(body, dict):
        return False
    changed = False
    for name in ("reserved_credits", "final_credits"):
        value = body.get(name)
        if type(value) is int:
            body[name] = rng.choice((str(value), f"{value}.00", float(value)))
            changed = True
    for holder, name in _number_fields(answer):
        if isinstance(holder.get(name), int | float) and not isinstance(holder.get(name), bool):
            holder[name] = str(holder[name])
            changed = True
    return changed


def _number_fields(answer: Answer) -> list[tuple[dict[str, Any], str]]:
    body = answer.body
    fields: list[tuple[dict[str, Any], str]] = [(body, "queue_position")]
    if isinstance(body.get("metrics"), dict):
        fields.append((body["metrics"], "inference_time"))
    fields += [(image, name) for image in odi_images(body) for name in ("width", "height", "file_size")]
    return fields


def odi_images(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The image parts of a documented OdiRouter result's ``outputs``."""
    outputs = body.get("outputs")
    return [o for o in outputs if isinstance(o, dict) and o.get("type") == "image"] if isinstance(outputs, list) else []


# --- fields ------------------------------------------------------------------------------------

_OPTIONAL: dict[Shape, tuple[str, ...]] = {
    "rivya_task": ("reserved_credits", "final_credits", "created_at", "updated_at", "model", "client_request_id"),
    "odi_submit": ("queue_position",),
    "odi_status": ("response_url", "queue_position", "metrics"),
    "odi_result": ("metadata",),
}
_OPTIONAL_NULLS = ("result", "error", "error_type")  # dropped rather than sent as null
_OPTIONAL_IMAGE = ("content_type", "file_size", "width", "height", "file_name")


def missing_fields(answer: Answer, rng: Random) -> bool:
    """A leaner answer: optional fields the docs show are left out (never an id, a state or the image)."""
    body = answer.body
    if not isinstance(body, dict):
        return False
    slots: list[tuple[dict[str, Any], str]] = [(body, n) for n in _OPTIONAL.get(answer.shape, ()) if n in body]
    slots += [(body, n) for n in _OPTIONAL_NULLS if n in body and body[n] is None]
    if isinstance(body.get("error"), dict) and "message" in body["error"]:
        slots.append((body["error"], "message"))
    slots += [(image, n) for image in odi_images(body) for n in _OPTIONAL_IMAGE if n in image]
    if not slots:
        return False
    dropped = [slot for slot in slots if rng.random() < 0.5] or [rng.choice(slots)]
    for holder, name in dropped:
        holder.pop(name, None)
    return True


# --- where the image is ------------------------------------------------------------------------

_RIVYA_SHAPES = ("documented", "urls", "url", "images", "bare_list", "output", "data", "top_output", "top_images")
_ODI_SHAPES = ("outputs", "fal", "image", "output", "data")


def image_location(answer: Answer, rng: Random) -> bool:
    """The final image under another key or shape, as a URL without extension, a ``data:`` URI or base64
    (an answer's drafts, where it has any, stay only in the documented ``outputs`` shape)."""
    delivered = answer.image
    if delivered is None:
        return False
    drawn = "image_location" in answer.drawn
    if answer.shape == "rivya_task":
        shape = rng.choice(_RIVYA_SHAPES) if drawn else "documented"
        _place_rivya_image(answer.body, shape, delivered)
        return shape != "documented" or answer.plan.delivery != "url"
    images = odi_images(answer.body)
    if not images:
        return False
    shape = rng.choice(_ODI_SHAPES) if drawn else "outputs"
    answer.body = _place_odi_image(answer.body, images[-1], shape, delivered)  # the final one
    return shape != "outputs" or answer.plan.delivery != "url"


def _place_rivya_image(body: dict[str, Any], shape: str, delivered: Delivered) -> None:
    text = delivered.as_text()
    image = delivered.into({"url": delivered.url, "content_type": delivered.mime})
    old = body.get("result")
    drafts = old["urls"][:-1] if isinstance(old, dict) and isinstance(old.get("urls"), list) else []
    result: Any = {
        "documented": {"primary_url": text, "urls": [*drafts, text]},
        "urls": {"urls": [*drafts, text]},
        "url": {"url": text},
        "images": {"images": [image]},
        "bare_list": [text],
        "output": {"output": [text]},
        "data": {"data": [delivered.into({"url": delivered.url})]},
    }.get(shape)
    body["result"] = result
    if shape == "top_output":
        body["output"] = [text]
    elif shape == "top_images":
        body["images"] = [image]


def _place_odi_image(body: dict[str, Any], image: dict[str, Any], shape: str, delivered: Delivered) -> dict[str, Any]:
    item = delivered.into({k: v for k, v in image.items() if k != "type"})
    outputs = body.pop("outputs")
    if shape == "outputs":
        return {**body, "outputs": [o if o is not image else {"type": "image", **item} for o in outputs]}
    text = " ".join(o["text"] for o in outputs if isinstance(o, dict) and isinstance(o.get("text"), str))
    placed: dict[str, Any] = {
        "fal": {"images": [item], "description": text},
        "image": {"image": item},
        "output": {"output": {"images": [item]}},
        "data": {"data": {"images": [item]}},
    }[shape]
    return {**body, **placed}


# --- money and errors --------------------------------------------------------------------------


def stated_cost(answer: Answer, rng: Random) -> bool:
    """The provider states what it billed: always the amount the sandbox's ledger holds for the task."""
    body = answer.body
    if answer.shape == "rivya_task":
        if type(body.get("final_credits")) is not int:
            return False
        body["final_credits"] = rng.choice((str(body["final_credits"]), f"{body['final_credits']}.00"))
        return True
    if answer.billed is None or not isinstance(body, dict):
        return False
    usd = answer.billed / 1_000_000
    ways = [w for w in ("units", "cost_text", "cost_number", "billing") if rng.random() < 0.5] or ["units"]
    if "units" in ways:
        answer.headers["x-fal-billable-units"] = "1" if answer.billed > 0 else "0"
    if "cost_text" in ways:
        body["cost"] = f"{usd:.2f}" if answer.billed % 10_000 == 0 else f"{usd:.6f}"
    elif "cost_number" in ways:
        body["cost"] = usd
    if "billing" in ways:
        body["billing"] = {"cost_usd": usd}
    return True


def error_envelopes(answer: Answer, rng: Random) -> bool:
    """The same error in another envelope, and ``Retry-After`` in another unit (or left out)."""
    changed = _retry_after(answer, rng)
    body = answer.body
    if not isinstance(body, dict) or not ("error" in body or "detail" in body):
        return changed
    message, code = _error_text(body)
    rest = {k: v for k, v in body.items() if k not in ("error", "detail")}  # e.g. error_type stays
    envelope = rng.choice(
        (
            {"error": {"code": code, "message": message}},
            {"error": message},
            {"detail": message},
            {"detail": [{"loc": ["body"], "msg": message, "type": code}]},
        )
    )
    answer.body = {**envelope, **rest}
    return True


def _error_text(body: dict[str, Any]) -> tuple[str, str]:
    error, detail = body.get("error"), body.get("detail")
    if isinstance(error, dict):
        return str(error.get("message", "")), str(error.get("code", "error"))
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return str(detail[0].get("msg", "")), str(detail[0].get("type", "value_error"))
    return str(detail if detail is not None else error), "error"


def _retry_after(answer: Answer, rng: Random) -> bool:
    if answer.status not in (429, 503):
        return False
    stated = answer.headers.get("retry-after")
    try:
        wait = float(stated) if stated is not None else 1.0
    except ValueError:
        return False
    form = rng.choice(("seconds", "fraction", "date", "missing"))
    if form == "missing":
        return answer.headers.pop("retry-after", None) is not None
    if form == "seconds":
        value = str(math.ceil(wait))
    elif form == "fraction":
        value = f"{wait:.2f}"
    else:  # an HTTP date has whole seconds: round up, never ask for an earlier retry than meant
        value = email.utils.formatdate(math.ceil(answer.now + wait), usegmt=True)
    answer.headers["retry-after"] = value
    return value != stated


_EXTRA_FIELDS: dict[str, Callable[[Random], Any]] = {
    "x_trace_id": lambda rng: f"{rng.getrandbits(64):016x}",
    "logs": lambda rng: None,
    "timings": lambda rng: {"inference": round(rng.uniform(0.5, 40), 3)},
    "has_nsfw_concepts": lambda rng: [False],
    "region": lambda rng: rng.choice(("us-east-1", "eu-west-4", "asia-1")),
    "priority": lambda rng: "normal",
    "api_version": lambda rng: "2025-06-01",
    "webhook_url": lambda rng: None,
}


def extra_fields(answer: Answer, rng: Random) -> bool:
    """Keys no doc names, at the top and sometimes one level down (never one a reader looks for)."""
    body = answer.body
    if not isinstance(body, dict):
        return False
    holders = [body] + [v for v in body.values() if isinstance(v, dict)]
    targets = [body] + ([rng.choice(holders[1:])] if len(holders) > 1 and rng.random() < 0.5 else [])
    changed = False
    for holder in targets:
        for name in rng.sample(sorted(_EXTRA_FIELDS), rng.randint(1, 3)):
            if name not in holder:
                holder[name] = _EXTRA_FIELDS[name](rng)
                changed = True
    return changed


# --- the registry ------------------------------------------------------------------------------

_TASK_SHAPES: frozenset[Shape] = frozenset({"rivya_task", "odi_submit", "odi_status", "odi_result"})


@dataclass(frozen=True, slots=True)
class Family:
    apply: Callable[[Answer, Random], bool]
    shapes: frozenset[Shape]  # the answers it may touch
    planned: bool = False  # follows the task's plan: applied to every answer, not drawn
    drawn: bool = True  # may be drawn per answer


# In the order they are applied: the create's body first, then words and numbers, then shapes.
FAMILIES: dict[str, Family] = {
    "minimal_create": Family(minimal_create, frozenset({"rivya_task", "odi_submit"}), planned=True, drawn=False),
    "returned_urls": Family(returned_urls, frozenset({"probe", *_TASK_SHAPES}), planned=True, drawn=False),
    "read_lag": Family(read_lag, frozenset({"probe"}), planned=True, drawn=False),
    "state_words": Family(state_words, frozenset({"rivya_task", "odi_status"})),
    "number_strings": Family(number_strings, _TASK_SHAPES),
    "missing_fields": Family(missing_fields, _TASK_SHAPES),
    "image_location": Family(image_location, frozenset({"rivya_task", "odi_result"}), planned=True),
    "stated_cost": Family(stated_cost, frozenset({"rivya_task", "odi_result"})),
    "error_envelopes": Family(error_envelopes, frozenset({"error"})),
    "extra_fields": Family(extra_fields, frozenset({*_TASK_SHAPES, "error", "other"})),
}


def answer_key(config: MutationConfig, provider: str, task_key: str, kind: str, n: int) -> str:
    """The seed material of one answer: (seed, provider, task, answer kind, n-th answer of that kind)."""
    material = f"{config.seed}|{provider}|{task_key}|{kind}|{n}".encode()
    return hashlib.blake2b(material, digest_size=16).hexdigest()


def vary(answer: Answer, key: str) -> list[str]:
    """Apply the planned families, and with probability ``rate`` a drawn subset of the others.

    Each family gets its own ``Random`` from ``key``, so turning one family off leaves the others'
    choices as they were. Returns the names of the families that changed the answer.
    """
    enabled = answer.config.families
    candidates = [name for name, f in FAMILIES.items() if f.drawn and name in enabled and answer.shape in f.shapes]
    dice = Random(f"{key}|draw")
    if candidates and dice.random() < answer.config.rate:
        answer.drawn = frozenset([n for n in candidates if dice.random() < 0.5] or [dice.choice(candidates)])
    applied = []
    for name, family in FAMILIES.items():
        if name not in enabled or answer.shape not in family.shapes:
            continue
        if (family.planned or name in answer.drawn) and family.apply(answer, Random(f"{key}|{name}")):
            applied.append(name)
    return applied
