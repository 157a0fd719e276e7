"""Response helpers, including the deliberately broken ones that emulate dropped connections.

ASGI has no "close the socket" message. A response that announces a Content-Length, sends less and
then raises makes uvicorn close the transport mid-body: the client sees exactly what a dropped
connection looks like (httpx: ``RemoteProtocolError: peer closed connection without sending
complete message body``). ``DeliberateDisconnect`` marks those exceptions so the server's log filter
and the stats middleware can tell them from real crashes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class DeliberateDisconnect(Exception):
    """Raised on purpose to cut a connection; never a bug."""


class DroppedConnection(Response):
    """Headers, then ``partial`` of a body announced as ``declared_length`` bytes, then a cut."""

    def __init__(self, partial: bytes = b"", declared_length: int | None = None, media_type: str = "application/json"):
        super().__init__(content=b"", status_code=200, media_type=media_type)
        self.partial = partial
        self.declared_length = declared_length if declared_length is not None else len(partial) + 1024
        self.raw_headers = [
            (b"content-type", media_type.encode("latin-1")),
            (b"content-length", str(self.declared_length).encode("latin-1")),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.partial, "more_body": True})
        raise DeliberateDisconnect(f"sandbox cut the connection after {len(self.partial)} bytes")


class QuietDeliberateDisconnects(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" records caused by ``DeliberateDisconnect``."""

    def filter(self, record: logging.LogRecord) -> bool:
        pending = [record.exc_info[1]] if record.exc_info else []
        seen: set[int] = set()
        while pending:
            exc = pending.pop()
            if exc is None or id(exc) in seen:
                continue
            seen.add(id(exc))
            if isinstance(exc, DeliberateDisconnect):
                return False
            if isinstance(exc, BaseExceptionGroup):
                pending.extend(exc.exceptions)
            pending.extend((exc.__cause__, exc.__context__))
        return True


def install_disconnect_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, QuietDeliberateDisconnects) for f in logger.filters):
        logger.addFilter(QuietDeliberateDisconnects())


class FastJSONResponse(Response):
    """JSON with compact separators; ``None`` values are kept (the providers send explicit nulls)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return FastJSONResponse(payload, status_code=status, headers=headers)


def text_response(text: str, status: int) -> Response:
    return Response(text, status_code=status, media_type="text/plain; charset=utf-8")


def iso_utc(ts: float) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``, as both providers print times."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def base_url(request: Request) -> str:
    """Scheme and authority the client used, so absolute URLs work for 127.0.0.1 and localhost alike."""
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every offending field, e.g. ``params.aspect_ratio: Input should be ...``."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ""
        for part in error.get("loc", ()):
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(problems)


@dataclass(slots=True)
class BufferedResponse:
    """An app's whole answer, held back so a middleware can rewrite it before it goes out."""

    start: Message
    body: bytes

    @property
    def status(self) -> int:
        return self.start["status"]

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.start.get("headers", []) if k.lower() == name), None)


async def buffer_response(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> BufferedResponse:
    """Run ``app`` and collect its answer; a deliberate cut is passed on as it happened, then re-raised."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def buffering_send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        else:
            chunks.append(message.get("body", b""))

    try:
        await app(scope, receive, buffering_send)
    except Exception:
        if start is not None:  # a deliberate cut: pass on what was sent so far, then cut as before
            await send(start)
            await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
        raise
    if start is None:
        raise RuntimeError("the app finished without starting a response")
    return BufferedResponse(start, b"".join(chunks))


async def send_buffered(send: Send, start: Message, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Send a (rewritten) buffered answer with its Content-Length set to the new body's."""
    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode("latin-1")))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
