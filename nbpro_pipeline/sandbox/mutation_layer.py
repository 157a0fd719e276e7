"""Mutation mode on the wire: per-task memory, and the middleware that varies documented answers.

The routes keep answering the documented way; this layer sits in front of them and re-presents each
answer through the families in ``mutations``. Off (``wire.mutations.seed`` is None), a request costs
one attribute check. Only tasks created while the mode was on are varied (their ``mutation_key`` was
set at create), so switching it on mid-run never contradicts what a client was already told.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from nbpro_pipeline.sandbox.mutation_config import MutationConfig
from nbpro_pipeline.sandbox.mutation_routes import Endpoint, classify, odirouter_alt_urls, rivya_alt_path
from nbpro_pipeline.sandbox.mutations import (
    Answer,
    Delivered,
    MutationPlan,
    Shape,
    TaskLinks,
    answer_key,
    odi_images,
    plan_for,
    vary,
)
from nbpro_pipeline.sandbox.responses import BufferedResponse, base_url, buffer_response, send_buffered
from nbpro_pipeline.sandbox.runtime import ODIROUTER, PROVIDERS, RIVYA, SandboxRuntime
from nbpro_pipeline.sandbox.tasks import SandboxTask
from nbpro_pipeline.sandbox.wire_shapes import ExtraFieldsMiddleware

_JSON = "application/json"


@dataclass(slots=True)
class TaskMutations:
    """What mutation mode remembers of one task: its plan, how many answers of each kind, what it applied."""

    key: str
    plan: MutationPlan
    created_at: float
    answers: Counter[str] = field(default_factory=Counter)
    applied: set[str] = field(default_factory=set)


class Mutator:
    """Per-task mutation state (in memory; ``/_sandbox/reset`` clears it) and the answer pipeline."""

    def __init__(self, runtime: SandboxRuntime) -> None:
        self.rt = runtime
        self._tasks: dict[str, TaskMutations] = {}
        self._untied: Counter[str] = Counter()  # answers tied to no task (errors, other routes), per route
        self.counts: dict[str, Counter[str]] = {p: Counter() for p in PROVIDERS}  # families applied

    @property
    def config(self) -> MutationConfig:
        return self.rt.config.wire.mutations

    def clear(self) -> None:
        self._tasks.clear()
        self._untied.clear()
        self.counts = {p: Counter() for p in PROVIDERS}

    def task_state(self, provider: str, task_id: str) -> TaskMutations | None:
        """The task's mutation state; None for a task created with the mode off (never varied)."""
        state = self._tasks.get(task_id)
        if state is not None:
            return state
        task = self.rt.task(provider, task_id)
        if task is None or task.mutation_key is None or self.config.seed is None:
            return None
        state = TaskMutations(task.mutation_key, plan_for(self.config, provider, task.mutation_key), task.created_at)
        self._tasks[task_id] = state
        return state

    def is_alt(self, provider: str, task_id: str) -> bool:
        """Was this task handed alternative URLs (so its alternative paths serve it)?"""
        state = self.task_state(provider, task_id)
        return state is not None and state.plan.alt_urls

    def applied(self, task_id: str) -> list[str]:
        state = self._tasks.get(task_id)
        return sorted(state.applied) if state is not None else []

    # --- one answer ------------------------------------------------------------------------------

    async def serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        base = base_url(Request(scope))
        now = time.time()
        state = self.task_state(endpoint.provider, endpoint.task_id) if endpoint.task_id else None
        if state is not None and await self._answered_before_route(endpoint, state, base, now, send):
            return
        buffered = await buffer_response(app, scope, receive, send)
        content_type = buffered.header(b"content-type") or b""
        if not content_type.startswith(_JSON.encode()) or not buffered.body:
            await send_buffered(send, buffered.start, list(buffered.start.get("headers", [])), buffered.body)
            return
        body = json.loads(buffered.body)
        task_id = endpoint.task_id or _created_id(endpoint, buffered.status, body)
        task = self.rt.task(endpoint.provider, task_id) if task_id else None
        state = self.task_state(endpoint.provider, task_id) if task is not None and task_id else None
        if task is not None and state is None:  # created with the mode off: told the documented way
            await send_buffered(send, buffered.start, list(buffered.start.get("headers", [])), buffered.body)
            return
        answer = self._answer(endpoint, _shape(endpoint, buffered.status), buffered, body, base, now)
        if task is not None and state is not None:
            await self._tie(answer, task, state, base)
        self._record(answer, self._key(endpoint, answer, state, scope["path"]), state)
        await _send_answer(send, buffered, answer)

    async def _answered_before_route(
        self, endpoint: Endpoint, state: TaskMutations, base: str, now: float, send: Send
    ) -> bool:
        """Read lag and a documented path of a task given other URLs: 404 without running the route
        (a cancel on the wrong path must not cancel anything)."""
        answer = Answer(
            provider=endpoint.provider,
            kind=endpoint.kind,
            shape="probe",
            status=0,
            body=None,
            headers={"content-type": _JSON},
            config=self.config,
            plan=state.plan,
            task_id=endpoint.task_id,
            age_s=now - state.created_at,
            alt_path=endpoint.alt_path,
            links=_links(endpoint.provider, endpoint.task_id or "", state.plan, base),
            now=now,
        )
        self._record(answer, self._key(endpoint, answer, state, ""), state)
        if answer.status != 404:
            return False
        body = json.dumps(answer.body, separators=(",", ":")).encode()
        start = {"type": "http.response.start", "status": 404}
        await send_buffered(send, start, [(k.encode(), v.encode()) for k, v in answer.headers.items()], body)
        return True

    def _answer(
        self, endpoint: Endpoint, shape: Shape, buffered: BufferedResponse, body: Any, base: str, now: float
    ) -> Answer:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in buffered.start.get("headers", [])}
        return Answer(
            provider=endpoint.provider,
            kind=endpoint.kind,
            shape=shape,
            status=buffered.status,
            body=body,
            headers=headers,
            config=self.config,
            alt_path=endpoint.alt_path,
            now=now,
        )

    async def _tie(self, answer: Answer, task: SandboxTask, state: TaskMutations, base: str) -> None:
        """Give the answer its task's plan and the truths the families present: links, image, billing."""
        answer.plan = state.plan
        answer.task_id = task.id
        answer.age_s = answer.now - state.created_at
        answer.links = _links(task.provider, task.id, state.plan, base)
        if answer.shape in ("rivya_task", "odi_result") and "image_location" in self.config.families:
            answer.image = await self._delivered(answer, task, state.plan)
        if answer.shape == "odi_result" and "stated_cost" in self.config.families:
            answer.billed = sum(e.amount for e in self.rt.store.ledger(provider=task.provider, task_id=task.id))

    async def _delivered(self, answer: Answer, task: SandboxTask, plan: MutationPlan) -> Delivered | None:
        url = _documented_image_url(answer)
        if url is None:
            return None
        mime = "image/jpeg" if task.output_format == "jpg" else "image/png"
        if plan.delivery == "blob":
            return Delivered(self.rt.signer.blob_url(url) or url, mime)
        if plan.delivery in ("data_uri", "b64_json"):  # the CDN's exact bytes, corrupt ones included
            return Delivered(url, mime, await self.rt.image_bytes(task), plan.delivery == "b64_json")
        return Delivered(url, mime)

    def _key(self, endpoint: Endpoint, answer: Answer, state: TaskMutations | None, path: str) -> str:
        kind = f"probe:{endpoint.kind}" if answer.shape == "probe" else endpoint.kind
        if state is not None:
            n = state.answers[kind]
            state.answers[kind] += 1
            return answer_key(self.config, endpoint.provider, state.key, kind, n)
        route = f"{kind} {path}"
        n = self._untied[route]
        self._untied[route] += 1
        return answer_key(self.config, endpoint.provider, "route:" + route, kind, n)

    def _record(self, answer: Answer, key: str, state: TaskMutations | None) -> None:
        applied = vary(answer, key)
        self.counts[answer.provider].update(applied)
        if state is not None:
            state.applied.update(applied)


def _created_id(endpoint: Endpoint, status: int, body: Any) -> str | None:
    if endpoint.kind not in ("create", "submit") or status >= 300 or not isinstance(body, dict):
        return None
    task_id = body.get("id" if endpoint.provider == RIVYA else "request_id")
    return task_id if isinstance(task_id, str) else None


def _shape(endpoint: Endpoint, status: int) -> Shape:
    if status >= 400:
        return "error"
    kind = endpoint.kind
    if endpoint.provider == RIVYA:
        return "rivya_task" if kind in ("create", "task") else "other"
    if kind == "submit":
        return "odi_submit"
    if kind == "status" or (kind == "response" and status == 202):
        return "odi_status"
    return "odi_result" if kind == "response" else "other"


def _links(provider: str, task_id: str, plan: MutationPlan, base: str) -> TaskLinks | None:
    if not plan.alt_urls:
        return None
    if provider == ODIROUTER:
        status_url, response_url, cancel_url = odirouter_alt_urls(base, task_id)
        return TaskLinks(status_url, response_url=response_url, cancel_url=cancel_url)
    path = rivya_alt_path(task_id)
    return TaskLinks(base + path, location=path if plan.relative_location else base + path)


def _documented_image_url(answer: Answer) -> str | None:
    body = answer.body
    if not isinstance(body, dict):
        return None
    if answer.shape == "rivya_task":  # the final image: the last of urls, the primary_url
        result = body.get("result")
        urls = result.get("urls") if isinstance(result, dict) else None
        return urls[-1] if isinstance(urls, list) and urls and isinstance(urls[-1], str) else None
    images = odi_images(body)
    return images[-1].get("url") if images else None


async def _send_answer(send: Send, buffered: BufferedResponse, answer: Answer) -> None:
    body = json.dumps(answer.body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
    await send_buffered(send, {**buffered.start, "status": answer.status}, headers, body)


class MutationMiddleware:
    """Routes every provider answer through the ``Mutator`` while mutation mode is on.

    It also fronts the ``extra_fields`` knob's middleware, so that with both off a request costs the
    same one middleware frame and attribute check it did before mutation mode existed.
    """

    def __init__(self, app: ASGIApp, mutator: Mutator) -> None:
        self.routes = app
        self.app = ExtraFieldsMiddleware(app, mutator.rt)  # a no-op pass-through unless the knob is on
        self.mutator = mutator
        self.runtime = mutator.rt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wire = self.runtime.config.wire
        if wire.mutations.seed is None:
            await (self.app if wire.extra_fields else self.routes)(scope, receive, send)
            return
        endpoint = classify(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        await self.mutator.serve(endpoint, scope, receive, send, self.app)
