"""Assembles both provider APIs, the CDN and the admin routes into one Starlette app on one port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nbpro_pipeline.sandbox.admin_api import AdminApi
from nbpro_pipeline.sandbox.cdn_api import CdnApi
from nbpro_pipeline.sandbox.config import SandboxConfig
from nbpro_pipeline.sandbox.mutation_layer import MutationMiddleware, Mutator
from nbpro_pipeline.sandbox.mutation_routes import AltRoutes, is_alt_status_poll
from nbpro_pipeline.sandbox.odirouter_api import QUEUE_PATH, OdiRouterApi
from nbpro_pipeline.sandbox.responses import DeliberateDisconnect, base_url, json_response
from nbpro_pipeline.sandbox.rivya_api import RivyaApi
from nbpro_pipeline.sandbox.runtime import ResponseCounters, SandboxRuntime


def traffic_class(path: str) -> str:
    if path.startswith("/api/"):
        return "rivya"
    if path.startswith("/model/"):
        return "odirouter"
    if path.startswith("/cdn/rivya/"):
        return "rivya-cdn"
    if path.startswith("/cdn/odirouter/"):
        return "odirouter-cdn"
    if path.startswith("/_sandbox"):
        return "admin"
    return "other"


def is_status_poll(method: str, path: str) -> bool:
    """A read of one task's status: Rivya ``GET /api/v1/generations/{id}``, OdiRouter ``GET .../status``."""
    if method != "GET":
        return False
    if path.startswith("/api/v1/generations/"):
        return True
    if path.startswith(QUEUE_PATH + "/requests/") and path.endswith("/status"):
        return True
    return is_alt_status_poll(method, path)


class ResponseCounterMiddleware:
    """Counts every response by traffic class and status, and every deliberate connection cut.

    Pure ASGI (not BaseHTTPMiddleware) because it sits on every request of a throughput benchmark.
    """

    def __init__(self, app: ASGIApp, counters: ResponseCounters) -> None:
        self.app = app
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        traffic = traffic_class(scope["path"])
        if is_status_poll(scope["method"], scope["path"]):
            self.counters.record_poll(traffic)
        try:
            await self.app(scope, receive, counting_send)
        except DeliberateDisconnect:
            self.counters.record_drop(traffic)
            raise
        self.counters.record(traffic, status)


def create_app(config: SandboxConfig | None, state_dir: str | Path) -> Starlette:
    """A sandbox app on ``state_dir``; the store opens on lifespan startup and closes on shutdown."""
    runtime = SandboxRuntime(config or SandboxConfig(), state_dir)
    mutator = Mutator(runtime)
    rivya, odirouter = RivyaApi(runtime), OdiRouterApi(runtime)

    async def index(request: Request) -> Response:
        base = base_url(request)
        return json_response(
            {
                "service": "nbpro sandbox: local emulator of Rivya and OdiRouter (Nano Banana Pro)",
                "rivya_base_url": base,
                "odirouter_base_url": base + "/model",
                "odirouter_submit": base + QUEUE_PATH,
                "admin": base + "/_sandbox/stats",
            }
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.open()
        try:
            yield
        finally:
            await runtime.close()

    routes = [
        Route("/", index, methods=["GET"]),
        *rivya.routes(),
        *odirouter.routes(),
        *CdnApi(runtime).routes(),
        *AdminApi(runtime, mutator).routes(),
        # matched only by paths no documented route took, so they cost the hot path nothing
        *AltRoutes(mutator.is_alt, rivya, odirouter).routes(),
        *rivya.fallback_routes(),
        *odirouter.fallback_routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(ResponseCounterMiddleware, counters=runtime.responses),
            Middleware(MutationMiddleware, mutator=mutator),  # also fronts the extra_fields knob
        ],
    )
    app.state.runtime = runtime
    app.state.mutator = mutator
    return app
