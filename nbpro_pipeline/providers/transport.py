"""A lean HTTP/1.1 transport for httpx on plain asyncio streams: the provider clients' default.

Why not httpx's own (httpcore over anyio)? Profiled at 64 tasks in flight, it cost ~1-2 ms of CPU per
request on this project's 2-core target, most of it in the connection pool: every request and every
response close scans every pooled connection (``has_expired`` -> ``getpeername`` + ``poll`` syscalls
per connection), and anyio's cancel scopes wrap every read and write. One image is at least three
requests (create, poll, download), so that alone was several times the CPU budget of an image.

This transport keeps idle connections per origin in a LIFO list and checks only the one it reuses,
by state asyncio already tracks (EOF seen, transport closing), with no syscall. It speaks just what the
providers need: HTTP/1.1 with keep-alive, Content-Length or chunked bodies (both ways), TLS through
the default context, responses streamed to the caller. Content decoding, redirects, auth headers and
proxies from the environment stay with httpx's client, which wraps this transport.

Errors are httpx's, with the same meaning the retry logic relies on: ``ConnectError``/``ConnectTimeout``
/``PoolTimeout`` mean the request never left; anything after the first byte was written is a
``WriteError``/``ReadError``/``ReadTimeout``/``RemoteProtocolError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

_HEAD_LIMIT = 256 * 1024
_READ_CHUNK = 64 * 1024
_DEFAULT_PORTS = {b"http": 80, b"https": 443, "http": 80, "https": 443}


class _Conn:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def reusable(self, now: float, expiry: float) -> bool:
        """Still good for another request: not closed by the server, nothing unread, not too old."""
        r = self.reader
        return (
            now - self.idle_since < expiry
            and not self.writer.is_closing()
            and not r.at_eof()
            and r.exception() is None
            and not r._buffer  # type: ignore[attr-defined]  # stray bytes: the stream is out of sync
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


def _timeout(timeouts: dict[str, Any], name: str) -> float | None:
    value = timeouts.get(name)
    return None if value is None else float(value)


class LeanAsyncTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        max_connections: int = 128,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._open = 0
        self._waiting: list[asyncio.Future[None]] = []
        self._closed = False

    # -- connections ---------------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def _take_idle(self, origin: tuple[str, str, int]) -> _Conn | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used one: least likely to have been timed out
            if conn.reusable(now, self.keepalive_expiry):
                return conn
            self._discard(conn)
        return None

    def _discard(self, conn: _Conn) -> None:
        conn.close()
        self._open -= 1
        self._wake()

    def _release(self, origin: tuple[str, str, int], conn: _Conn) -> None:
        if self._closed:
            self._discard(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(origin, []).append(conn)
        self._wake()

    def _wake(self) -> None:
        """A connection was freed or parked: let one request waiting for a pool slot look again."""
        if self._waiting:
            waiter = self._waiting.pop(0)
            if not waiter.done():
                waiter.set_result(None)

    async def _acquire(self, origin: tuple[str, str, int], timeouts: dict[str, Any], request: httpx.Request) -> _Conn:
        conn = self._take_idle(origin)
        if conn is not None:
            return conn
        if self._open >= self.max_connections:
            await self._wait_for_slot(origin, timeouts, request)
            conn = self._take_idle(origin)
            if conn is not None:
                return conn
        self._open += 1
        try:
            return await self._connect(origin, timeouts, request)
        except BaseException:
            self._open -= 1
            raise

    async def _wait_for_slot(self, origin, timeouts: dict[str, Any], request: httpx.Request) -> None:
        try:
            async with asyncio.timeout(_timeout(timeouts, "pool")):
                while self._open >= self.max_connections and not self._idle.get(origin):
                    other = next((lst for lst in self._idle.values() if lst), None)
                    if other:  # an idle connection to another origin makes room
                        self._discard(other.pop())
                        break
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiting.append(waiter)
                    try:
                        await waiter
                    finally:
                        if waiter in self._waiting:
                            self._waiting.remove(waiter)
        except TimeoutError:
            raise httpx.PoolTimeout("no connection free in the pool", request=request) from None

    async def _connect(self, origin: tuple[str, str, int], timeouts: dict[str, Any], request: httpx.Request) -> _Conn:
        scheme, host, port = origin
        tls = self._ssl_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(_timeout(timeouts, "connect")):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=_HEAD_LIMIT
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}", request=request) from None
        return _Conn(reader, writer)

    # -- one exchange --------------------------------------------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS.get(scheme, 80))
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        conn = await self._acquire(origin, timeouts, request)
        try:
            await self._send_request(conn, request, timeouts)
            status, reason, headers, http10 = await self._read_head(conn, request, timeouts)
        except BaseException:
            self._discard(conn)
            raise
        body = _Body(self, origin, conn, request, headers, status, timeouts, http10)
        return httpx.Response(
            status,
            headers=headers,
            stream=body,
            extensions={"http_version": b"HTTP/1.0" if http10 else b"HTTP/1.1", "reason_phrase": reason},
        )

    async def _send_request(self, conn: _Conn, request: httpx.Request, timeouts: dict[str, Any]) -> None:
        target = request.url.raw_path
        lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
        chunked = False
        for name, value in request.headers.raw:
            lines.append(name + b": " + value)
            if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        writer = conn.writer
        try:
            async with asyncio.timeout(_timeout(timeouts, "write")):
                writer.write(head)
                async for part in request.stream:  # type: ignore[union-attr]
                    if not part:
                        continue
                    if chunked:
                        writer.write(b"%x\r\n" % len(part) + part + b"\r\n")
                    else:
                        writer.write(part)
                if chunked:
                    writer.write(b"0\r\n\r\n")
                await writer.drain()
        except TimeoutError:
            raise httpx.WriteTimeout("writing the request timed out", request=request) from None
        except OSError as exc:
            raise httpx.WriteError(f"writing the request failed: {exc}", request=request) from None

    async def _read_head(
        self, conn: _Conn, request: httpx.Request, timeouts: dict[str, Any]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
        try:
            async with asyncio.timeout(_timeout(timeouts, "read")):
                while True:
                    raw = await conn.reader.readuntil(b"\r\n\r\n")
                    status, reason, headers, http10 = _parse_head(raw, request)
                    if not (100 <= status < 200) or status == 101:
                        return status, reason, headers, http10
        except TimeoutError:
            raise httpx.ReadTimeout("waiting for the response timed out", request=request) from None
        except asyncio.IncompleteReadError as exc:
            what = "without sending a response" if not exc.partial else "in the middle of the response head"
            raise httpx.RemoteProtocolError(f"server disconnected {what}", request=request) from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError("response head too large", request=request) from None
        except OSError as exc:
            raise httpx.ReadError(f"reading the response failed: {exc}", request=request) from None

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._open = 0


def _parse_head(raw: bytes, request: httpx.Request) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:100]!r}", request=request)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx.RemoteProtocolError(f"malformed header line {line[:100]!r}", request=request)
        headers.append((name, value.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else b"", headers, parts[0] == b"HTTP/1.0"


class _Body(httpx.AsyncByteStream):
    """The response body, read off the connection as the caller iterates; the connection goes back to
    the pool only once the body was read to its end and the server allows keep-alive."""

    def __init__(
        self,
        transport: LeanAsyncTransport,
        origin: tuple[str, str, int],
        conn: _Conn,
        request: httpx.Request,
        headers: list[tuple[bytes, bytes]],
        status: int,
        timeouts: dict[str, Any],
        http10: bool,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._conn: _Conn | None = conn
        self._request = request
        self._timeout = _timeout(timeouts, "read")
        length: int | None = None
        chunked = False
        keep_alive = not http10
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise httpx.RemoteProtocolError("bad Content-Length", request=request) from None
            elif lname == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lname == b"connection":
                v = value.lower()
                keep_alive = b"keep-alive" in v if http10 else b"close" not in v
        if request.method == "HEAD" or status in (204, 304):
            length, chunked = 0, False
        self._length = length
        self._chunked = chunked
        self._keep_alive = keep_alive and (chunked or length is not None)
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        reader = conn.reader
        try:
            async with asyncio.timeout(self._timeout):
                if self._chunked:
                    while True:
                        size_line = await reader.readuntil(b"\r\n")
                        size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
                        if size == 0:
                            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                                pass
                            break
                        yield await reader.readexactly(size)
                        await reader.readexactly(2)
                elif self._length is not None:
                    left = self._length
                    while left > 0:
                        part = await reader.read(min(left, _READ_CHUNK))
                        if not part:
                            raise asyncio.IncompleteReadError(b"", left)
                        left -= len(part)
                        yield part
                else:  # no length: the body runs to the end of the connection
                    while part := await reader.read(_READ_CHUNK):
                        yield part
        except TimeoutError:
            self._abandon()
            raise httpx.ReadTimeout("reading the response body timed out", request=self._request) from None
        except (asyncio.IncompleteReadError, ValueError):
            self._abandon()
            raise httpx.RemoteProtocolError("the response body ended early", request=self._request) from None
        except asyncio.LimitOverrunError:
            self._abandon()
            raise httpx.RemoteProtocolError("malformed chunked body", request=self._request) from None
        except OSError as exc:
            self._abandon()
            raise httpx.ReadError(f"reading the response body failed: {exc}", request=self._request) from None
        except BaseException:
            self._abandon()
            raise
        self._done = True

    def _abandon(self) -> None:
        if self._conn is not None:
            self._transport._discard(self._conn)
            self._conn = None

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep_alive:
            self._transport._release(self._origin, conn)
        else:  # not read to the end (or the server closes): the connection cannot carry another request
            self._transport._discard(conn)
