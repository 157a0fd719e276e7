"""Real HTTP servers on loopback for the HTTP-stack tests: origins that record what reached them
(aiohttp.web, plain or TLS with a trustme CA) and a forward proxy (proxy.py) in a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from aiohttp import web

REPO = Path(__file__).resolve().parents[2]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: str | None
    peer_port: int


@dataclass
class Origin:
    """A server on a free loopback port answering ``routes`` ((method, path) -> handler); every request
    is recorded in ``seen``, and ``max_active`` is the most requests it ever held at once."""

    routes: dict[tuple[str, str], Handler]
    ssl_context: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> Origin:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(
            Seen(request.method, request.path, request.headers.get("Authorization"), peer[1] if peer else 0)
        )
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return web.Response(status=404, text=f"no route {request.method} {request.path}")
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            return await handler(request)
        finally:
            self.active -= 1


def json_answer(body: str, delay_s: float = 0.0) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if delay_s:
            await asyncio.sleep(delay_s)
        return web.Response(text=body, content_type="application/json")

    return handler


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA (its PEM at ``ca_file``, what SSL_CERT_FILE names) and a server context for 127.0.0.1."""

    ca_file: Path
    server_context: ssl.SSLContext


def make_tls(tmp_path: Path) -> TlsFiles:
    ca = trustme.CA()
    ca_file = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return TlsFiles(ca_file, context)


class ForwardProxy:
    """proxy.py (a maintained forward proxy from PyPI) on a free loopback port, in its own process
    group; ``requests()`` are the requests it forwarded, keep-alive ones included, e.g.
    ``POST 127.0.0.1:5000/api/v1/generations`` for plain HTTP and ``CONNECT 127.0.0.1:5001`` for a tunnel."""

    def __init__(self, workdir: Path) -> None:
        self.log = workdir / "proxy.log"
        port_file = workdir / "proxy.port"
        cmd = [
            sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
            "--num-workers", "1", "--num-acceptors", "1", "--log-file", str(self.log), "--log-level", "INFO",
            "--plugins", "tests.providers.proxy_log_plugin.EveryRequestLog",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=REPO
        )
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"proxy.py did not start: {self.log.read_text() if self.log.exists() else ''}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{int(port_file.read_text().split()[0])}"

    def requests(self) -> list[str]:
        if not self.log.exists():
            return []
        # "... forwarded | GET 127.0.0.1:38297/api/v1/credits", one line per request (proxy_log_plugin)
        return [
            line.split("forwarded | ", 1)[1] for line in self.log.read_text().splitlines() if "forwarded | " in line
        ]

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout_s: float = 10.0) -> list[str]:
        """The access log once ``predicate`` holds on it (log lines land when a request completes)."""
        deadline = time.monotonic() + timeout_s
        while not predicate(seen := self.requests()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return seen

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
