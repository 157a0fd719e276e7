"""A tiny provider stand-in on loopback that answers exactly what a test scripts, for shapes even the
sandbox's wire knobs do not make (an HTML page for a status, a submit without an id, a data: URI).

Real HTTP (uvicorn in a thread), so the clients read these answers through their whole stack.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nbpro_pipeline.sandbox.server import bind_socket


@dataclass
class Canned:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] | None = None


class ScriptedServer:
    """``script[(method, path)]`` is the answer; ``calls`` counts what was asked. Unscripted: 404."""

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], Canned] = {}
        self.calls: Counter[tuple[str, str]] = Counter()
        app = Starlette(routes=[Route("/{path:path}", self._answer, methods=["GET", "POST", "PUT"])])
        self._sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    async def _answer(self, request: Request) -> Response:
        key = (request.method, request.url.path)
        self.calls[key] += 1
        canned = self.script.get(key) or Canned(404, b'{"detail": "not scripted"}')
        return Response(canned.body, canned.status, headers=canned.headers, media_type=canned.content_type)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the scripted server did not start")
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
