"""The HTTP stack for URLs a table names (reference images): the providers' stack (``http_stack``: env
proxies, certificates, aiohttp's pool) with every address checked against a ``NetworkPolicy`` where the
connection is made.

aiohttp asks its resolver for a host's addresses and connects to exactly those, so ``GuardedResolver``
checks every address it returns: there is no second lookup a rebinding DNS server could answer
differently. aiohttp connects to an address literal (``http://127.0.0.1/``) without asking the resolver,
so literals are checked before the request. Through an environment proxy the proxy resolves the host:
the pipeline checks what the host resolves to here first, and the proxy's own egress rules are the rest.
"""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from nbpro_pipeline.network_policy import NetworkPolicy
from nbpro_pipeline.providers.http_stack import (
    DEFAULT_TIMEOUT,
    _Client,
    _FaithfulAiohttpTransport,
    trusted_ssl_context,
)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a host when any address it resolves to is refused by the policy."""

    def __init__(self, policy: NetworkPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        results: list[ResolveResult] = await self._inner.resolve(host, port, family)
        for result in results:
            self._policy.check(host, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


class _GuardedTransport(_FaithfulAiohttpTransport):
    def __init__(self, *, policy: NetworkPolicy, **kw) -> None:
        super().__init__(**kw)
        self._policy = policy

    def get_client(self) -> aiohttp.ClientSession:
        if self.proxy is not None:  # the connection is to the operator's proxy: the target is checked per request
            return super().get_client()
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self._policy),
            ssl=self.ssl_context,
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry,
        )
        return aiohttp.ClientSession(connector=connector)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if _is_literal(host):
            self._policy.check(host, host.split("%", 1)[0])
        elif self.proxy is not None:
            resolver = GuardedResolver(self._policy)
            try:
                await resolver.resolve(host, request.url.port or 0, socket.AF_UNSPEC)
            except OSError as exc:
                raise httpx.ConnectError(f"cannot resolve {host}: {exc}") from exc
            finally:
                await resolver.close()
        return await super().handle_async_request(request)


class _GuardedClient(_Client):
    def __init__(self, *, policy: NetworkPolicy, **kw) -> None:
        self._policy = policy  # before super().__init__, which makes the transports
        super().__init__(**kw)

    def _init_transport(self, *, transport: httpx.AsyncBaseTransport | None = None, **kw) -> httpx.AsyncBaseTransport:
        return _GuardedTransport(policy=self._policy, **kw)

    def _init_proxy_transport(self, proxy: httpx.Proxy, **kw) -> httpx.AsyncBaseTransport:
        return _GuardedTransport(policy=self._policy, proxy=proxy, **kw)


def build_guarded_http_client(
    policy: NetworkPolicy, *, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT, max_connections: int = 8
) -> httpx.AsyncClient:
    """An httpx client (env proxies and certificates as ``build_http_client``) that refuses, on every
    connection, addresses ``policy`` refuses (raising ``network_policy.AddressRefused``); it never
    follows redirects by itself, so the caller sees and re-checks each hop."""
    return _GuardedClient(
        policy=policy,
        timeout=timeout,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        verify=trusted_ssl_context(),
        trust_env=True,
        follow_redirects=False,
    )
