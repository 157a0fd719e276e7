"""The HTTP stack under every provider client: httpx's client over aiohttp's connection pool.

httpx's client does what users expect from the environment and the web: ``HTTP_PROXY``/``HTTPS_PROXY``
/``ALL_PROXY``/``NO_PROXY`` (either case), ``SSL_CERT_FILE``/``SSL_CERT_DIR``, redirects, gzip/deflate
decoding, timeouts. The bytes move through ``httpx-aiohttp`` (the aiohttp-backed transport the OpenAI
SDK offers): measured side by side in ``bench/throughput.py --transport httpx,aiohttp``, httpx's own
transport (httpcore) spends about twice the CPU per image, most of it scanning its connection pool with
a syscall per pooled connection on every request (docs/performance.md has the figures).

One thing is corrected here rather than trusted: httpx-aiohttp maps aiohttp's
``ServerDisconnectedError``, ``ClientOSError`` and read timeouts that aiohttp raises as
``ServerTimeoutError`` to ``httpx.ConnectTimeout``, which says "the request never left". The provider
clients retry a non-idempotent, billable create only on that promise, so a connection the server
dropped *after* reading the create would be resubmitted and billed twice. ``_FaithfulAiohttpTransport``
re-maps from the aiohttp exception itself: only a failure to connect is reported as one.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import certifi
import httpx
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient
from multidict import CIMultiDict

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def _faithful(exc: BaseException) -> httpx.TransportError:
    """The httpx error that says truthfully whether the request can have reached the server."""
    cause = exc.__cause__ if isinstance(exc, httpx.TransportError) and exc.__cause__ else exc
    message = str(cause) or type(cause).__name__
    if isinstance(cause, aiohttp.ClientHttpProxyError):  # the proxy refused the tunnel: nothing sent
        return httpx.ProxyError(message)
    if isinstance(cause, aiohttp.ClientConnectorError):  # DNS, refused, TLS handshake, proxy unreachable
        return httpx.ConnectError(message)
    if isinstance(cause, aiohttp.ConnectionTimeoutError):  # no connection (or pool slot) in time
        return httpx.ConnectTimeout(message)
    if isinstance(cause, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(message)
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(message)
    if isinstance(cause, aiohttp.ClientResponseError):  # a malformed answer
        return httpx.RemoteProtocolError(message)
    if isinstance(cause, (aiohttp.ClientPayloadError, aiohttp.ClientError, OSError)):
        return httpx.ReadError(message)
    if isinstance(exc, httpx.TransportError):
        return exc
    raise exc


@contextmanager
def _faithful_errors() -> Iterator[None]:
    try:
        yield
    except (TimeoutError, httpx.TransportError, aiohttp.ClientError, OSError) as exc:
        raise _faithful(exc) from exc


class _FaithfulStream(httpx.AsyncByteStream):
    """A response body whose read errors say "sent": a body cut off came from a request that arrived."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _faithful_errors():
            async for chunk in self._inner:
                yield chunk

    async def aclose(self) -> None:
        with _faithful_errors():
            await self._inner.aclose()


class _FaithfulAiohttpTransport(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # Header names go out as written (``Content-Length``), the way httpcore, curl and requests send
        # them, not lowercased: names are case-insensitive, but not every proxy treats them so (proxy.py
        # 2.4 adds its own ``Content-Length`` beside a lowercase one, and the origin rejects the request).
        headers = request.headers
        encoding = headers.encoding
        request.headers = CIMultiDict((k.decode(encoding), v.decode(encoding)) for k, v in headers.raw)  # type: ignore[assignment]
        try:
            with _faithful_errors():
                response = await super().handle_async_request(request)
        finally:
            request.headers = headers
        response.stream = _FaithfulStream(response.stream)  # type: ignore[arg-type]
        return response


class _SetCookieCookies(httpx.Cookies):
    """httpx's cookie jar, which looks at a response only when it sets a cookie.

    httpx hands every response to ``http.cookiejar`` through urllib-shaped wrappers (a second parse of
    the URL, a lock, a header scan): about a tenth of the client's CPU per API call, for answers that
    never set a cookie. Without ``Set-Cookie``/``Set-Cookie2`` the jar would add nothing, so skipping
    it changes nothing; a response that does set one goes through the jar as before.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


class _Client(HttpxAiohttpClient):
    """HttpxAiohttpClient whose transports (the default one and one per environment proxy) are ours,
    and whose cookie jar reads only responses that set cookies."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._cookies = _SetCookieCookies(self._cookies.jar)  # the same jar, so cookies= still counts

    def _init_transport(self, *, transport: httpx.AsyncBaseTransport | None = None, **kw) -> httpx.AsyncBaseTransport:
        return transport if transport is not None else _FaithfulAiohttpTransport(**kw)

    def _init_proxy_transport(self, proxy: httpx.Proxy, **kw) -> httpx.AsyncBaseTransport:
        return _FaithfulAiohttpTransport(proxy=proxy, **kw)


@functools.lru_cache(maxsize=8)
def _ssl_context(cafile: str | None, capath: str | None, _stamp: tuple[int, ...] | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile, capath=capath)


def trusted_ssl_context() -> ssl.SSLContext:
    """The context httpx builds for ``verify=True`` with ``trust_env`` (``SSL_CERT_FILE``, else
    ``SSL_CERT_DIR``, else certifi's bundle), made once per trust store and process rather than once per
    client and proxy route: loading the bundle costs about 20 ms of CPU. The store's size and mtime are
    in the key, so a changed file or directory is read again."""
    cafile, capath = os.environ.get("SSL_CERT_FILE") or None, None
    if cafile is None:
        capath = os.environ.get("SSL_CERT_DIR") or None
        cafile = None if capath else certifi.where()
    try:
        st = os.stat(cafile or capath)  # type: ignore[arg-type]
        stamp: tuple[int, ...] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None  # create_default_context raises the error httpx would
    return _ssl_context(cafile, capath, stamp)


def build_http_client(
    *,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    max_connections: int = 128,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The client a provider client makes when the caller brings none: proxies and certificates from
    the environment, at most ``max_connections`` open per route (API calls and downloads share them;
    each proxy gets its own pool), idle connections kept for reuse. ``transport`` replaces the stack
    (tests: ``httpx.MockTransport``, or a wrapped ``httpx.AsyncHTTPTransport``)."""
    return _Client(
        timeout=timeout,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        verify=trusted_ssl_context(),
        trust_env=True,
        transport=transport,
    )
