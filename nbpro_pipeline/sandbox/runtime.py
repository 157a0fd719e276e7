"""The provider-neutral machinery behind both emulated APIs, owned by one app instance.

Route modules only parse, validate and shape JSON; everything that must behave the same for both
providers lives here: admission (auth, rate limits, injected request faults), task creation from a
reproducible plan, settlement (billing when a task's clock says it is done, driven both by requests
and by a background tick so the ledger is right even if nobody polls), cancellation, signed result
URLs and image bytes.

Single-threaded by design: every method runs on the server's event loop, and none awaits between
reading and writing state, so "check the wallet, then reserve" cannot interleave with another
request. Only image rendering of large or JPEG images leaves the loop (a small thread pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbpro_pipeline.models.common import OutputFormat
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.sandbox.config import AuthConfig, SandboxConfig
from nbpro_pipeline.sandbox.faults import (
    DecisionSource,
    Draw,
    OccurrenceCounter,
    TaskPlan,
    corrupt_bytes,
    plan_task,
    request_fault,
)
from nbpro_pipeline.sandbox.images import ImageRenderer, RenderSpec, design_key
from nbpro_pipeline.sandbox.store import (
    Billing,
    IdempotencyRecord,
    LedgerEntry,
    SandboxStore,
    to_minor,
    to_wire,
)
from nbpro_pipeline.sandbox.tasks import Phase, SandboxTask
from nbpro_pipeline.sandbox.urls import UrlSigner, parse_sandbox_url

log = logging.getLogger(__name__)

RIVYA = Provider.RIVYA.value
ODIROUTER = Provider.ODIROUTER.value
PROVIDERS = (RIVYA, ODIROUTER)
_INLINE_RENDER_PIXELS = 1_500_000  # 1K PNGs (~1 ms) render on the loop; bigger ones and JPEGs do not


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is turned away before its route runs; each API renders it in its own envelope.

    kind: disabled | missing | invalid | revoked | expired | scope_denied | rate_limited |
    concurrency | http_5xx | drop_connection
    """

    kind: str
    retry_after: str | None = None
    status: int | None = None  # for http_5xx
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Admitted:
    draw: Draw
    now: float


class TokenBucket:
    """requests_per_s with a burst allowance; ``take`` answers 0 (granted) or seconds to wait."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class ResponseCounters:
    """Responses served per traffic class and status code; in memory, since process start or reset."""

    def __init__(self) -> None:
        self.by_class: dict[str, Counter[str]] = {}
        self.dropped: Counter[str] = Counter()
        self.status_polls: Counter[str] = Counter()  # task status reads per provider, whatever the answer

    def record(self, traffic_class: str, status: int) -> None:
        counter = self.by_class.get(traffic_class)
        if counter is None:
            counter = self.by_class[traffic_class] = Counter()
        counter[str(status)] += 1

    def record_drop(self, traffic_class: str) -> None:
        self.dropped[traffic_class] += 1

    def record_poll(self, traffic_class: str) -> None:
        self.status_polls[traffic_class] += 1

    def clear(self) -> None:
        self.by_class.clear()
        self.dropped.clear()
        self.status_polls.clear()


def check_api_key(auth: AuthConfig, authorization: str | None, key_prefix: str | None) -> str | None:
    """The refusal kind for an Authorization header, or None when the key is accepted."""
    if not authorization or not authorization.strip():
        return "missing"
    scheme, _, key = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return "invalid"
    key = key.strip()
    if not key:
        return "missing"
    if key_prefix and not key.startswith(key_prefix):
        return "invalid"
    if key in auth.revoked_keys:
        return "revoked"
    if key in auth.expired_keys:
        return "expired"
    if key in auth.scope_denied_keys:
        return "scope_denied"
    if auth.allowed_keys is not None and key not in auth.allowed_keys:
        return "invalid"
    return None


def new_task_id(provider: str) -> str:
    return ("gen_" if provider == RIVYA else "mmsu_") + secrets.token_hex(12)


class SandboxRuntime:
    def __init__(self, config: SandboxConfig, state_dir: str | Path) -> None:
        self._config = config
        self.state_dir = Path(state_dir)
        self.store = SandboxStore(self.state_dir)
        self.renderer = ImageRenderer(cache_bytes=config.render_cache_mb * 1024 * 1024)
        self.occurrences = OccurrenceCounter()
        self.responses = ResponseCounters()
        self.decisions = DecisionSource(config.seed)
        self.signer = UrlSigner(b"")
        self.started_at = time.time()
        self._due: list[tuple[float, str]] = []  # (finishes_at, task id): settlement heap
        self._active: dict[str, dict[str, SandboxTask]] = {p: {} for p in PROVIDERS}
        self._held: dict[str, int] = dict.fromkeys(PROVIDERS, 0)  # OdiRouter: price of running tasks
        self._buckets: dict[str, TokenBucket | None] = {}
        self._burst_until: dict[str, float] = dict.fromkeys(PROVIDERS, 0.0)
        self._inflight: dict[RenderSpec, asyncio.Future[bytes]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._rebuild_limits(time.time())

    # --- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        self.store.open(self._initial_wallets())
        self.signer = UrlSigner(self.store.secret)
        for task in self.store.tasks.values():
            if not task.settled:
                self._track(task)
        self.settle_due(time.time())
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sandbox-render")
        self._ticker = asyncio.create_task(self._settle_forever(), name="sandbox-settle")

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self.settle_due(time.time())
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.store.close()

    async def _settle_forever(self) -> None:
        while True:
            await asyncio.sleep(self._config.settle_interval_s)
            try:
                self.settle_due(time.time())
            except Exception:  # keep ticking: one bad batch must not stop all future billing
                log.exception("sandbox settlement failed")

    # --- config ----------------------------------------------------------------------------------

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def update_config(self, partial: dict[str, Any]) -> SandboxConfig:
        """Deep-merge, validate (raises pydantic ValidationError), apply at once."""
        old, new = self._config, self._config.updated(partial)
        self._config = new
        self.decisions = DecisionSource(new.seed)
        self.renderer.images.capacity_bytes = new.render_cache_mb * 1024 * 1024
        # A bucket keeps its fill level unless its own limits changed: switching a fault on must
        # not hand a rate-limited client a fresh burst.
        changed = [p for p in PROVIDERS if old.provider(p).rate_limit != new.provider(p).rate_limit]
        self._rebuild_limits(time.time(), changed)
        return new

    def _rebuild_limits(self, now: float, providers: list[str] | tuple[str, ...] = PROVIDERS) -> None:
        for provider in providers:
            rl = self._config.provider(provider).rate_limit
            if rl.requests_per_s:
                burst = rl.burst or max(1, math.ceil(rl.requests_per_s))
                self._buckets[provider] = TokenBucket(rl.requests_per_s, burst, now)
            else:
                self._buckets[provider] = None

    def _initial_wallets(self) -> dict[str, int]:
        billing = self._config.billing
        return {
            RIVYA: billing.rivya_initial_credits,
            ODIROUTER: to_minor(ODIROUTER, billing.odirouter_initial_usd),
        }

    # --- admission -------------------------------------------------------------------------------

    def admit(
        self, provider: str, authorization: str | None, digest: str, now: float, key_prefix: str | None
    ) -> Admitted | Refusal:
        """Settle what is due, then: API switched off? key? rate limits? an injected fault?"""
        self.settle_due(now)
        pcfg = self._config.provider(provider)
        if pcfg.auth.public_api_disabled:
            return Refusal("disabled")
        denied = check_api_key(pcfg.auth, authorization, key_prefix)
        if denied:
            return Refusal(denied)
        if now < self._burst_until[provider]:
            wait = self._burst_until[provider] - now
            return Refusal("rate_limited", self.retry_after(provider, wait), detail="rate limit burst in effect")
        bucket = self._buckets.get(provider)
        if bucket is not None:
            wait = bucket.take(now)
            if wait > 0:
                rps = pcfg.rate_limit.requests_per_s
                return Refusal("rate_limited", self.retry_after(provider, wait), detail=f"limit is {rps:g} requests/s")
        draw = self.decisions.bound(provider, digest, self.occurrences.next(provider, digest))
        fault = request_fault(pcfg.faults, draw)
        if fault is not None:
            if fault.kind == "drop_connection":
                return Refusal("drop_connection")
            if fault.kind == "http_5xx":
                return Refusal("http_5xx", status=fault.status)
            window = pcfg.rate_limit.retry_after_s or pcfg.faults.rate_limited_burst_s
            self._burst_until[provider] = now + window
            return Refusal("rate_limited", self.retry_after(provider, window), detail="rate limit burst in effect")
        return Admitted(draw, now)

    def retry_after(self, provider: str, wait_s: float) -> str:
        fixed = self._config.provider(provider).rate_limit.retry_after_s
        if fixed is not None:
            return f"{fixed:g}"
        return str(max(1, math.ceil(wait_s - 1e-9)))

    def concurrency_refusal(self, provider: str, now: float) -> Refusal | None:
        limits = self._config.provider(provider).rate_limit
        limit = limits.max_concurrent_tasks
        active = self._active[provider]
        if not limit or len(active) < limit or limits.admission == "queue":
            return None
        ends = [end for t in active.values() if (end := t.finishes_at) is not None]
        wait = (min(ends) - now) if ends else 60.0
        return Refusal(
            "concurrency",
            self.retry_after(provider, wait),
            detail=f"{len(active)} tasks are still running and the limit is {limit} concurrent tasks",
        )

    # --- tasks -----------------------------------------------------------------------------------

    def plan(self, provider: str, draw: Draw, resolution: str | None = None) -> TaskPlan:
        return plan_task(self._config.provider(provider), self._config.time_scale, draw, resolution)

    def slot_wait(self, provider: str, now: float) -> float:
        """Queue admission: seconds until a slot is free for a task created now (0 under the limit).

        First come, first served: with n tasks unfinished and C slots, the new task gets the slot freed
        by the (n - C + 1)-th of them to finish (tasks stuck forever never free one)."""
        limits = self._config.provider(provider).rate_limit
        limit = limits.max_concurrent_tasks
        active = [t for t in self._active[provider].values() if t.canceled_at is None]
        if limits.admission != "queue" or not limit or len(active) < limit:
            return 0.0
        ends = sorted(end for t in active if (end := t.finishes_at) is not None)
        k = len(active) - limit
        return max(0.0, ends[k] - now) if k < len(ends) else 365 * 24 * 3600.0

    def new_task(self, provider: str, plan: TaskPlan, now: float, **fields: Any) -> SandboxTask:
        return SandboxTask(
            provider=provider,
            id=new_task_id(provider),
            created_at=now,
            queue_s=max(plan.queue_s, self.slot_wait(provider, now)),
            processing_s=plan.processing_s,
            failure=plan.failure,
            stuck=plan.stuck,
            corrupt_image=plan.corrupt_image,
            corrupt_variant=plan.corrupt_variant,
            wrong_size=plan.wrong_size,
            mutation_key=None if self._config.wire.mutations.seed is None else plan.origin,
            **fields,
        )

    def register(
        self, task: SandboxTask, billing: Billing | None = None, idempotency: IdempotencyRecord | None = None
    ) -> None:
        """Persist a new task (and its reservation / idempotency key) and start its clock."""
        if idempotency is not None:
            self.store.add_task_with_key(task, billing, idempotency)
        else:
            self.store.add_task(task, billing)
        self._track(task)

    def _track(self, task: SandboxTask) -> None:
        self._active[task.provider][task.id] = task
        if task.provider == ODIROUTER:
            self._held[ODIROUTER] += task.price
        end = task.finishes_at
        if end is not None:
            heapq.heappush(self._due, (end, task.id))

    def task(self, provider: str, task_id: str) -> SandboxTask | None:
        task = self.store.tasks.get(task_id)
        return task if task is not None and task.provider == provider else None

    def active_count(self, provider: str) -> int:
        return len(self._active[provider])

    def held(self, provider: str) -> int:
        return self._held[provider]

    def queue_position(self, task: SandboxTask, now: float) -> int:
        """Tasks of the same provider created earlier and still waiting in the queue."""
        return sum(
            1
            for other in self._active[task.provider].values()
            if other.created_at < task.created_at and now < other.started_at and other.canceled_at is None
        )

    def cancel(self, task: SandboxTask, now: float) -> bool:
        """Cancel a running task now; False if it had already finished. Billing follows the phase."""
        phase = task.phase(now)
        if phase.terminal:
            return False
        task.canceled_at = now
        task.canceled_while = phase.value
        self.store.save_tasks([(task, self._settle(task))])
        return True

    # --- settlement ------------------------------------------------------------------------------

    def settle_due(self, now: float) -> None:
        due = self._due
        if not due or due[0][0] > now:
            return
        changes: list[tuple[SandboxTask, Billing | None]] = []
        tasks = self.store.tasks
        while due and due[0][0] <= now:
            _, task_id = heapq.heappop(due)
            task = tasks.get(task_id)
            if task is None or task.settled:
                continue
            end = task.finishes_at
            if end is None or end > now:
                continue
            changes.append((task, self._settle(task)))
        self.store.save_tasks(changes)

    def _settle(self, task: SandboxTask) -> Billing | None:
        """Mark a terminal task settled and say what it costs (the caller persists both together).

        Rivya: credits were reserved at create; success settles (0), failure refunds. OdiRouter:
        nothing was taken at submit; success is charged, a failure is free, a cancel is charged only
        if the task had started processing.
        """
        at = task.finishes_at
        assert at is not None
        phase = task.phase(at)
        task.settled = True
        self._active[task.provider].pop(task.id, None)
        if task.provider == RIVYA:
            if phase is Phase.SUCCEEDED:
                return Billing(LedgerEntry(RIVYA, task.id, "settle", 0, at), 0)
            return Billing(LedgerEntry(RIVYA, task.id, "refund", -task.price, at), task.price)
        self._held[ODIROUTER] -= task.price
        billed = phase is Phase.SUCCEEDED or (phase is Phase.CANCELED and task.canceled_while == Phase.PROCESSING.value)
        if billed:
            return Billing(LedgerEntry(ODIROUTER, task.id, "charge", task.price, at), -task.price)
        return None

    # --- results ---------------------------------------------------------------------------------

    def result_urls(self, task: SandboxTask, base_url: str, now: float) -> list[str]:
        """Fresh signed URLs, minted per call.

        The expired_url fault is drawn per mint (so it can strike tasks that finished before it was
        switched on), and never twice in a row: a client that re-fetches the task always recovers.
        """
        expired = False
        if task.last_url_expired:
            task.last_url_expired = False
            self.store.save_tasks([(task, None)])
        else:
            rate = self._config.provider(task.provider).faults.expired_url
            if rate > 0:
                digest = f"mint:{task.id}"
                occurrence = self.occurrences.next(task.provider, digest)
                if self.decisions.uniform(task.provider, "expired_url", digest, occurrence) < rate:
                    expired = task.last_url_expired = True
                    self.store.save_tasks([(task, None)])
        exp = int(now) - 1 if expired else math.ceil(now + self._config.result_url_ttl_s)
        return [self.signer.result_url(base_url, task.provider, task.id, 0, task.output_format, exp)]

    def render_spec(self, task: SandboxTask) -> RenderSpec:
        width, height = task.served_size
        caption = f"{task.provider} · {task.aspect_ratio} · {task.resolution} · {width}x{height}"
        design = design_key(task.provider, task.prompt, task.aspect_ratio, task.resolution, task.output_format)
        return RenderSpec(width, height, task.output, task.prompt, caption, design)

    async def image_bytes(self, task: SandboxTask) -> bytes:
        """The bytes served for a task's image: rendered lazily, cached, damaged if the plan says so."""
        spec = self.render_spec(task)
        data = self.renderer.cached(spec)
        if data is None:
            if spec.pixels <= _INLINE_RENDER_PIXELS and spec.fmt is OutputFormat.PNG:
                data = self.renderer.render(spec)
            else:
                data = await self._render_off_loop(spec)
        if task.corrupt_image:
            data = corrupt_bytes(data, task.corrupt_variant)
        return data

    async def _render_off_loop(self, spec: RenderSpec) -> bytes:
        future = self._inflight.get(spec)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._executor, self.renderer.render, spec)
            self._inflight[spec] = future
            future.add_done_callback(lambda _f: self._inflight.pop(spec, None))
        return await asyncio.shield(future)  # a client hanging up must not cancel the shared render

    def known_image_size(self, url: str, now: float) -> tuple[int, int] | None:
        """Pixel size of an image this sandbox holds (an upload or a finished result), by URL."""
        ref = parse_sandbox_url(url)
        if ref is None:
            return None
        if ref.kind == "file":
            stored = self.store.files.get(ref.id)
            return (stored.width, stored.height) if stored else None
        task = self.store.tasks.get(ref.id)
        if task is None or task.provider != ref.provider or task.phase(now) is not Phase.SUCCEEDED:
            return None
        return task.served_size

    # --- admin -----------------------------------------------------------------------------------

    def reset(self) -> None:
        self.store.reset(self._initial_wallets())
        self._due.clear()
        self._active = {p: {} for p in PROVIDERS}
        self._held = dict.fromkeys(PROVIDERS, 0)
        self._burst_until = dict.fromkeys(PROVIDERS, 0.0)
        self.occurrences.clear()
        self.renderer.clear()
        self.responses.clear()
        self._rebuild_limits(time.time())

    def stats(self, now: float) -> dict[str, Any]:
        """Counts per provider (top-level keys ``rivya`` / ``odirouter``) plus server-wide figures.

        Task counts describe the store (so they include tasks from before a restart); response
        counts are since process start or the last reset.
        """
        out: dict[str, Any] = {"uptime_s": round(now - self.started_at, 3)}
        for provider in PROVIDERS:
            phases: Counter[str] = Counter()
            failures: Counter[str] = Counter()
            created = 0
            for task in self.store.tasks.values():
                if task.provider != provider:
                    continue
                created += 1
                phase = task.phase(now)
                phases[phase.value] += 1
                if phase is Phase.FAILED:
                    failures[task.failure or "unknown"] += 1
            responses = self.responses.by_class.get(provider, Counter())
            downloads = self.responses.by_class.get(f"{provider}-cdn", Counter())
            out[provider] = {
                "tasks_created": created,
                "tasks_by_state": {p.value: phases.get(p.value, 0) for p in Phase},
                "failures_by_type": dict(failures),
                "active_tasks": len(self._active[provider]),
                "responses": dict(sorted(responses.items())),
                "rate_limited_429": responses.get("429", 0),
                "dropped_connections": self.responses.dropped.get(provider, 0),
                "status_polls": self.responses.status_polls.get(provider, 0),
                "downloads": dict(sorted(downloads.items())),
                "dropped_downloads": self.responses.dropped.get(f"{provider}-cdn", 0),
                "balance": to_wire(provider, self.store.balance(provider)),
            }
        out[ODIROUTER]["held_usd"] = to_wire(ODIROUTER, self._held[ODIROUTER])
        out["render_cache"] = self.renderer.images.stats()
        return out
