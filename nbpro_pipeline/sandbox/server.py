"""Running the sandbox: in a background thread for tests (``SandboxServer``) or blocking for the CLI.

We bind the listening socket ourselves and hand it to uvicorn, so port 0 yields a free port that is
known *before* the server starts, with no window in which another process could take it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from nbpro_pipeline.providers.http_stack import trusted_ssl_context
from nbpro_pipeline.sandbox.app import create_app
from nbpro_pipeline.sandbox.config import SandboxConfig
from nbpro_pipeline.sandbox.responses import install_disconnect_log_filter

_STARTUP_TIMEOUT_S = 20.0


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _uvicorn_config(app: Any) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
    )
    install_disconnect_log_filter()  # after Config: its logging setup must not wipe our filter
    return config


class _NotifyingServer(uvicorn.Server):
    """A uvicorn server that calls back once it is accepting connections (lifespan done)."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        await super().startup(sockets=sockets)
        if not self.should_exit and self._on_ready is not None:
            self._on_ready()

    async def main_loop(self) -> None:
        """uvicorn's tick loop (date header, exit check every 0.1 s), but woken at once by ``request_exit``:
        a test suite stops a server per test, and the idle tick wait added up."""
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, minus its fixed 0.1 s pause when no connection is open (the pause lets open
        connections finish their responses): a suite that stops a sandbox per test paid it each time."""
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets=sockets)
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        if not self.force_exit:
            await self.lifespan.shutdown()

    def request_exit(self) -> None:
        """Thread-safe: ask the server to shut down gracefully now."""
        self.should_exit = True
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                self._loop.call_soon_threadsafe(self._wake.set)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(
    host: str,
    port: int,
    state_dir: str | Path,
    config: SandboxConfig | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the sandbox in this thread until SIGINT/SIGTERM; ``on_ready`` gets the base URL."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    sock = bind_socket(host, port)
    url = f"http://{_url_host(host)}:{sock.getsockname()[1]}"
    server = _NotifyingServer(
        _uvicorn_config(create_app(config, state_dir)),
        on_ready=(lambda: on_ready(url)) if on_ready else None,
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises Ctrl-C after its graceful shutdown; the state is already closed
    finally:
        sock.close()


class SandboxServer:
    """A sandbox on a free port in a background thread; use as a context manager.

    ``rivya_url`` and ``odirouter_url`` are the base URLs to give the provider clients; the sync
    helpers call the ``/_sandbox`` admin routes, so they exercise the same code a remote user would.
    """

    def __init__(
        self,
        state_dir: str | Path,
        config: SandboxConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.config = config or SandboxConfig()
        self.host = host
        self.port = port
        self._server: _NotifyingServer | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._admin: httpx.Client | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        if self._server is not None:
            raise RuntimeError("this SandboxServer is already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._sock = bind_socket(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        ready = threading.Event()
        self._server = _NotifyingServer(_uvicorn_config(create_app(self.config, self.state_dir)), ready.set)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="nbpro-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not ready.wait(0.01):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the sandbox server failed to start (see the log above)")
        return self

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._server is not None:
            self._server.request_exit()
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- addresses -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def rivya_url(self) -> str:
        return self.base_url

    @property
    def odirouter_url(self) -> str:
        return self.base_url + "/model"

    # --- admin helpers ---------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        if self._admin is None:
            # the process's shared context: a test suite makes an admin client per sandbox, and a fresh
            # context (the CA bundle loaded again) cost more CPU than most of those tests' requests
            self._admin = httpx.Client(base_url=self.base_url, timeout=30, verify=trusted_ssl_context())
        return self._admin

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._client().request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def set_config(self, partial: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", "/_sandbox/config", json=partial)

    def ledger(self, provider: str | None = None) -> list[dict[str, Any]]:
        params = {"provider": provider} if provider else None
        return self._call("GET", "/_sandbox/ledger", params=params)["entries"]

    def topup(self, provider: str, amount: float) -> float:
        return self._call("POST", "/_sandbox/topup", json={"provider": provider, "amount": amount})["balance"]

    def wallets(self) -> dict[str, Any]:
        return self._call("GET", "/_sandbox/wallets")

    def reset(self) -> None:
        self._call("POST", "/_sandbox/reset")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_sandbox/stats")

    def tasks(self, provider: str | None = None) -> list[dict[str, Any]]:
        """``GET /_sandbox/tasks``: each task's phase, net billing, image sha256 and mutation families."""
        params = {"provider": provider} if provider else None
        return self._call("GET", "/_sandbox/tasks", params=params)["tasks"]
