"""Which addresses a URL from a prompt table may make the pipeline connect to.

A reference URL is written by whoever wrote the table; fetched blindly it would reach the machine's own
services (loopback), the private network, or a cloud metadata endpoint, and the bytes would then be
uploaded to a provider (SSRF). So every address a reference host resolves to must be public, unless the
operator allows it: ``allow_networks`` (CIDR blocks or single addresses) or ``allow_hosts`` (exact host
names, or ``.suffix`` for a domain and its subdomains). Cloud metadata addresses are refused always.
The check runs where the connection is made (``providers.guarded_stack``), on every redirect hop.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

ALLOW_NETWORKS_ENV = "NBPRO_REFERENCE_ALLOW_NETWORKS"
ALLOW_HOSTS_ENV = "NBPRO_REFERENCE_ALLOW_HOSTS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# instance metadata and credential endpoints: AWS (v4, v6, ECS), Azure's wire server, Alibaba, Oracle
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "168.63.129.16", "100.100.100.200", "192.0.0.192")
)


class AddressRefused(Exception):
    """A URL's host is (or resolves to) an address the policy refuses; nothing was sent to it."""

    def __init__(self, host: str, address: str, why: str, *, allowable: bool = True) -> None:
        where = f"{host} resolves to {address}, {why}" if host != address else f"{address} is {why}"
        hint = (
            f" If it is yours, allow it: {ALLOW_NETWORKS_ENV}={address}"
            + (f" or {ALLOW_HOSTS_ENV}={host}" if host != address else "")
            + " (or reference_allow_networks / reference_allow_hosts of the pipeline resource)"
            if allowable
            else " Metadata endpoints cannot be allowed: host the image elsewhere."
        )
        super().__init__(f"{where}; references are fetched only from public addresses.{hint}")
        self.host, self.address, self.why = host, address, why


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or Teredo IPv6 address (each reaches it)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    return ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address a table may make us fetch from (None: it is one)."""
    embedded = _embedded_v4(ip)
    for candidate in (embedded, ip) if embedded else (ip,):  # the IPv4 address inside says most
        if candidate in METADATA_ADDRESSES:
            return "a cloud metadata address"
        for attribute, why in (  # the specific classes first: most of them are also "private"
            ("is_loopback", "a loopback address"),
            ("is_link_local", "a link-local address"),
            ("is_multicast", "a multicast address"),
            ("is_unspecified", "the unspecified address"),
            ("is_reserved", "a reserved address"),
            ("is_private", "a private address"),
        ):
            if getattr(candidate, attribute):
                return why
        if not candidate.is_global:
            return "not a public address"
    return None


class NetworkPolicy(BaseModel):
    """What reference downloads may reach besides public addresses."""

    model_config = ConfigDict(frozen=True)

    allow_networks: tuple[str, ...] = Field(
        default=(), description="CIDR blocks or addresses reference URLs may resolve to, e.g. 10.20.0.0/16"
    )
    allow_hosts: tuple[str, ...] = Field(
        default=(), description="host names allowed whatever they resolve to; '.corp.example' takes subdomains"
    )

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not a network (write 10.0.0.0/8, 127.0.0.1 or ::1/128)") from None
        return value

    @field_validator("allow_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(h.strip().lower().rstrip(".") for h in value if h.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NetworkPolicy:
        """From ``NBPRO_REFERENCE_ALLOW_NETWORKS`` and ``NBPRO_REFERENCE_ALLOW_HOSTS`` (comma-separated)."""
        env = os.environ if environ is None else environ
        return cls(allow_networks=_split(env.get(ALLOW_NETWORKS_ENV)), allow_hosts=_split(env.get(ALLOW_HOSTS_ENV)))

    def _host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == h or (h.startswith(".") and (host.endswith(h) or host == h[1:])) for h in self.allow_hosts)

    def check(self, host: str, address: str) -> None:
        """Raise ``AddressRefused`` unless ``host`` may be reached at ``address``."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scope id (fe80::1%eth0) names no other address
        if ip in METADATA_ADDRESSES or _embedded_v4(ip) in METADATA_ADDRESSES:
            raise AddressRefused(host, address, "a cloud metadata address", allowable=False)
        if self._host_allowed(host) or any(ip in ipaddress.ip_network(n, strict=False) for n in self.allow_networks):
            return
        why = address_problem(ip)
        if why:
            raise AddressRefused(host, address, why)


def _split(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())
