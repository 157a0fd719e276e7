"""``/_sandbox``: what tests, benchmarks and demos use to steer and audit the sandbox (no auth).

Not part of either provider's API. Every route settles due tasks first, so the ledger and the
stats it returns are current to the moment of the request.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nbpro_pipeline.sandbox.responses import describe_validation_error, json_response
from nbpro_pipeline.sandbox.runtime import PROVIDERS, SandboxRuntime
from nbpro_pipeline.sandbox.store import UNIT, to_minor, to_wire
from nbpro_pipeline.sandbox.tasks import Phase, SandboxTask

if TYPE_CHECKING:
    from nbpro_pipeline.sandbox.mutation_layer import Mutator


def _problem(status: int, detail: str) -> Response:
    return json_response({"detail": detail}, status)


class AdminApi:
    def __init__(self, runtime: SandboxRuntime, mutator: Mutator) -> None:
        self.rt = runtime
        self.mutator = mutator

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/_sandbox/health", self.health, methods=["GET"]),
            Route("/_sandbox/ledger", self.ledger, methods=["GET"]),
            Route("/_sandbox/wallets", self.wallets, methods=["GET"]),
            Route("/_sandbox/topup", self.topup, methods=["POST"]),
            Route("/_sandbox/reset", self.reset, methods=["POST"]),
            Route("/_sandbox/config", self.get_config, methods=["GET"]),
            Route("/_sandbox/config", self.put_config, methods=["PUT"]),
            Route("/_sandbox/stats", self.stats, methods=["GET"]),
            Route("/_sandbox/tasks", self.tasks, methods=["GET"]),
            Route("/_sandbox/{rest:path}", self.not_found, methods=["GET", "POST", "PUT", "DELETE"]),
        ]

    def _now(self) -> float:
        now = time.time()
        self.rt.settle_due(now)
        return now

    async def health(self, request: Request) -> Response:
        now = self._now()
        return json_response(
            {"status": "ok", "uptime_s": round(now - self.rt.started_at, 3), "tasks": len(self.rt.store.tasks)}
        )

    async def ledger(self, request: Request) -> Response:
        self._now()
        provider = request.query_params.get("provider")
        if provider is not None and provider not in PROVIDERS:
            return _problem(400, f"provider must be one of {', '.join(PROVIDERS)}")
        entries = self.rt.store.ledger(provider=provider, task_id=request.query_params.get("task_id"))
        return json_response({"entries": [e.to_wire() for e in entries]})

    async def wallets(self, request: Request) -> Response:
        self._now()
        return json_response(
            {
                provider: {"unit": UNIT[provider], **{k: to_wire(provider, v) for k, v in wallet.items()}}
                for provider, wallet in self.rt.store.wallets().items()
            }
        )

    async def topup(self, request: Request) -> Response:
        self._now()
        try:
            body = json.loads(await request.body())
            provider, amount = body["provider"], body["amount"]
        except (ValueError, KeyError, TypeError):
            return _problem(400, 'send {"provider": "rivya"|"odirouter", "amount": <number>}')
        if provider not in PROVIDERS or not isinstance(amount, int | float) or isinstance(amount, bool):
            return _problem(400, f"provider must be one of {', '.join(PROVIDERS)} and amount a number")
        if provider == "rivya" and amount != int(amount):
            return _problem(400, "Rivya credits are whole numbers")
        balance = self.rt.store.topup(provider, to_minor(provider, amount))
        return json_response({"provider": provider, "balance": to_wire(provider, balance), "unit": UNIT[provider]})

    async def reset(self, request: Request) -> Response:
        self.rt.reset()
        self.mutator.clear()
        return json_response({"status": "reset"})

    async def get_config(self, request: Request) -> Response:
        return json_response(self.rt.config.model_dump(mode="json"))

    async def put_config(self, request: Request) -> Response:
        try:
            partial = json.loads(await request.body())
        except ValueError as exc:
            return _problem(400, f"invalid JSON: {exc}")
        if not isinstance(partial, dict):
            return _problem(400, "send a JSON object with the fields to change")
        try:
            config = self.rt.update_config(partial)
        except ValidationError as exc:
            return _problem(400, f"invalid config: {describe_validation_error(exc)}")
        return json_response(config.model_dump(mode="json"))

    async def stats(self, request: Request) -> Response:
        out = self.rt.stats(self._now())
        for provider in PROVIDERS:  # families mutation mode applied, per provider, since start or reset
            out[provider]["mutations"] = dict(sorted(self.mutator.counts[provider].items()))
        return json_response(out)

    async def tasks(self, request: Request) -> Response:
        """Every task of a provider as the truth has it: phase, net billing, image digest, and the
        mutation families its answers went through (what a property test checks a client against)."""
        now = self._now()
        provider = request.query_params.get("provider")
        if provider is not None and provider not in PROVIDERS:
            return _problem(400, f"provider must be one of {', '.join(PROVIDERS)}")
        rows = []
        for name in [provider] if provider else PROVIDERS:
            billed = self.rt.store.billed_by_task(name)
            tasks = [t for t in self.rt.store.tasks.values() if t.provider == name]
            rows += [await self._task_row(t, billed.get(t.id, 0), now) for t in tasks]
        return json_response({"tasks": rows})

    async def _task_row(self, task: SandboxTask, billed: int, now: float) -> dict[str, Any]:
        phase = task.phase(now)
        digest = None
        if phase is Phase.SUCCEEDED:
            digest = hashlib.sha256(await self.rt.image_bytes(task)).hexdigest()
        return {
            "id": task.id,
            "provider": task.provider,
            "phase": phase.value,
            "billed": to_wire(task.provider, billed),
            "prompt": task.prompt,
            "resolution": task.resolution,
            "image_sha256": digest,
            "images": task.images,
            "blank": task.blank,
            "duplicate": task.duplicate,
            "mutations": self.mutator.applied(task.id),
        }

    async def not_found(self, request: Request) -> Response:
        return _problem(404, f"no admin route {request.method} {request.url.path}")
