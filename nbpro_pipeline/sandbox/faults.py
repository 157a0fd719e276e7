"""Reproducible fault and latency decisions.

Every random choice is a hash of (seed, provider, decision name, request-body digest, how many times
that body was seen before). Hashing instead of a shared RNG makes a run reproducible however requests
interleave: the 3rd submit of prompt X draws the same numbers whether 1 or 64 other requests raced it,
and a retried body gets a fresh draw, so a retry of a failed prompt can succeed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

from nbpro_pipeline.providers.odirouter.wire import ODI_ERROR_TYPES
from nbpro_pipeline.sandbox.config import FaultConfig, ProviderConfig

_TWO_64 = float(2**64)
TASK_FAILURE_TYPES: tuple[str, ...] = tuple(t for t in ODI_ERROR_TYPES if t != "CANCELED")


def body_digest(body: bytes) -> str:
    """Digest of a request body; JSON is canonicalised so key order and spacing do not matter."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


def route_digest(method: str, path: str, body: bytes = b"") -> str:
    """Digest for bodiless requests (polls, downloads): the request line stands in for the body."""
    return hashlib.blake2b(method.encode() + b" " + path.encode() + b"\n" + body, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class DecisionSource:
    """Uniform draws in [0, 1), a pure function of their inputs."""

    seed: int

    def uniform(self, provider: str, name: str, digest: str, occurrence: int) -> float:
        key = f"{self.seed}|{provider}|{name}|{digest}|{occurrence}".encode()
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / _TWO_64

    def bound(self, provider: str, digest: str, occurrence: int) -> Draw:
        return Draw(self, provider, digest, occurrence)


@dataclass(frozen=True, slots=True)
class Draw:
    """The draws of one request: ``draw("stuck_task")`` and so on."""

    source: DecisionSource
    provider: str
    digest: str
    occurrence: int

    def __call__(self, name: str) -> float:
        return self.source.uniform(self.provider, name, self.digest, self.occurrence)

    def fires(self, name: str, rate: float) -> bool:
        return rate > 0 and self(name) < rate


class OccurrenceCounter:
    """How many times each (provider, digest) has been drawn for; in memory, so a restart starts over."""

    def __init__(self) -> None:
        self._seen: defaultdict[tuple[str, str], int] = defaultdict(int)

    def next(self, provider: str, digest: str) -> int:
        key = (provider, digest)
        n = self._seen[key]
        self._seen[key] = n + 1
        return n

    def clear(self) -> None:
        self._seen.clear()


RequestFaultKind = Literal["drop_connection", "http_5xx", "rate_limited"]


@dataclass(frozen=True, slots=True)
class RequestFault:
    kind: RequestFaultKind
    status: int


def request_fault(faults: FaultConfig, draw: Draw) -> RequestFault | None:
    """Transport-level faults that strike before the route does anything (nothing is created)."""
    if draw.fires("drop_connection", faults.drop_connection):
        return RequestFault("drop_connection", 0)
    if draw.fires("http_5xx", faults.http_5xx):
        status = (500, 502, 503)[min(2, int(draw("http_5xx.status") * 3))]
        return RequestFault("http_5xx", status)
    if draw.fires("rate_limited", faults.rate_limited):
        return RequestFault("rate_limited", 429)
    return None


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """Everything decided about a task when it is created; its state afterwards follows the clock."""

    queue_s: float
    processing_s: float
    failure: str | None  # an OdiRouter error type, or None for success
    stuck: bool
    corrupt_image: bool
    wrong_size: bool
    drop_after_processing: bool
    corrupt_variant: float  # where and how the bytes get damaged, when corrupt_image fires
    origin: str = ""  # the create's (body digest, occurrence): keys mutation mode's choices reproducibly


def plan_task(config: ProviderConfig, time_scale: float, draw: Draw, resolution: str | None = None) -> TaskPlan:
    faults = config.faults
    failure = None
    u = draw("task_failed")
    cumulative = 0.0
    for error_type in TASK_FAILURE_TYPES:
        cumulative += getattr(faults.task_failed, error_type)
        if u < cumulative:
            failure = error_type
            break
    return TaskPlan(
        queue_s=_finite(config.latency.queued.sample(draw("latency.queued")) * time_scale),
        processing_s=_finite(config.latency.processing_for(resolution).sample(draw("latency.processing")) * time_scale),
        failure=failure,
        stuck=draw.fires("stuck_task", faults.stuck_task),
        corrupt_image=draw.fires("corrupt_image", faults.corrupt_image),
        wrong_size=draw.fires("wrong_size", faults.wrong_size),
        drop_after_processing=draw.fires("drop_after_processing", faults.drop_after_processing),
        corrupt_variant=draw("corrupt_image.variant"),
        origin=f"{draw.digest}.{draw.occurrence}",
    )


def _finite(seconds: float) -> float:
    return seconds if math.isfinite(seconds) else 1e9


def corrupt_bytes(data: bytes, variant: float) -> bytes:
    """Damage an encoded image so no decoder accepts it, while keeping a plausible size.

    The cut keeps the header (so the file still "looks like" a PNG/JPEG to a magic-byte check) and
    drops the end-of-image marker; the appended tail is garbage without 0xFF bytes, so it can never
    contain a JPEG marker that would let a decoder stop early and call the image complete.
    """
    cut = max(64, int(len(data) * (0.35 + 0.3 * variant)))
    seed = hashlib.blake2b(data[:64] + str(variant).encode(), digest_size=32).digest()
    tail = bytes(b % 0xFF for b in (seed * 8))  # 256 bytes, none of them 0xFF
    return data[:cut] + tail


def should_drop_download(faults: FaultConfig, draw: Draw) -> bool:
    return draw.fires("drop_download", faults.drop_download)
