"""Every knob of the sandbox, as one validated pydantic tree.

One tree (rather than loose kwargs) so the CLI, a config file and the runtime ``PUT /_sandbox/config``
route all speak the same shape and are validated by the same code: a typo in a test's partial config
fails with a 400 naming the field instead of silently doing nothing.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.sandbox.wire_shapes import WireConfig

_FORBID = ConfigDict(extra="forbid")
_STANDARD_NORMAL = NormalDist()

Rate = Field(default=0.0, ge=0.0, le=1.0)


class Dist(BaseModel):
    """A latency distribution in seconds, sampled from a uniform draw so that sampling is reproducible.

    ``fixed`` needs ``value``; ``uniform`` needs ``low``/``high``; ``lognormal`` needs ``median``/``sigma``
    (``median * exp(sigma * z)``, the usual shape of queue and inference times: mostly quick, a long tail).
    """

    model_config = _FORBID

    dist: Literal["fixed", "uniform", "lognormal"] = "fixed"
    value: float | None = Field(default=None, ge=0)
    low: float | None = Field(default=None, ge=0)
    high: float | None = Field(default=None, ge=0)
    median: float | None = Field(default=None, ge=0)
    sigma: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _parameters_match_kind(self) -> Dist:
        needed = {"fixed": ("value",), "uniform": ("low", "high"), "lognormal": ("median", "sigma")}[self.dist]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.dist} distribution needs {', '.join(missing)}")
        stray = [
            n for n in ("value", "low", "high", "median", "sigma") if n not in needed and getattr(self, n) is not None
        ]
        if stray:
            raise ValueError(f"a {self.dist} distribution does not take {', '.join(stray)}")
        if self.dist == "uniform" and self.high < self.low:  # type: ignore[operator]
            raise ValueError(f"uniform high ({self.high}) is below low ({self.low})")
        return self

    def sample(self, u: float) -> float:
        """Map a uniform draw ``u`` in [0, 1) onto this distribution."""
        if self.dist == "fixed":
            return float(self.value)  # type: ignore[arg-type]
        if self.dist == "uniform":
            return self.low + u * (self.high - self.low)  # type: ignore[operator]
        z = _STANDARD_NORMAL.inv_cdf(min(max(u, 1e-12), 1 - 1e-12))
        return self.median * math.exp(self.sigma * z)  # type: ignore[operator]

    @classmethod
    def fixed(cls, value: float) -> Dist:
        return cls(dist="fixed", value=value)

    @classmethod
    def uniform(cls, low: float, high: float) -> Dist:
        return cls(dist="uniform", low=low, high=high)

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> Dist:
        return cls(dist="lognormal", median=median, sigma=sigma)

    @classmethod
    def parse(cls, spec: str) -> Dist:
        """CLI spelling: ``fixed:0.5``, ``uniform:0.2,0.8``, ``lognormal:1.2,0.4`` or a bare number."""
        kind, _, args = spec.strip().partition(":")
        try:
            if not args:
                return cls.fixed(float(kind))
            numbers = [float(x) for x in args.split(",")]
            if kind == "fixed" and len(numbers) == 1:
                return cls.fixed(numbers[0])
            if kind == "uniform" and len(numbers) == 2:
                return cls.uniform(*numbers)
            if kind == "lognormal" and len(numbers) == 2:
                return cls.lognormal(*numbers)
        except ValueError as exc:
            raise ValueError(f"bad latency spec {spec!r}: {exc}") from exc
        raise ValueError(f"bad latency spec {spec!r}; use fixed:SECONDS, uniform:LOW,HIGH or lognormal:MEDIAN,SIGMA")


class LatencyConfig(BaseModel):
    """Seconds a task spends in each non-terminal state; the defaults keep demos quick.

    ``processing_by_resolution`` (e.g. ``{"4K": lognormal}``) replaces ``processing`` for those
    resolutions: Nano Banana Pro takes about twice as long at 2K and 3.5x at 4K as at 1K.
    """

    model_config = _FORBID

    queued: Dist = Field(default_factory=lambda: Dist.uniform(0.2, 0.8))
    processing: Dist = Field(default_factory=lambda: Dist.uniform(0.8, 2.2))
    processing_by_resolution: dict[Literal["1K", "2K", "4K"], Dist] = Field(default_factory=dict)

    def processing_for(self, resolution: str | None) -> Dist:
        return self.processing_by_resolution.get(resolution, self.processing)  # type: ignore[arg-type]


# Published reseller measurements of Nano Banana Pro: median ~17/35/60 s, p95 ~25/50/90 s at 1K/2K/4K;
# lognormal sigma = ln(p95/median)/1.645. ``nbpro sandbox --latency realistic`` and the benches use it
# (with ``time_scale`` to run it fast).
REALISTIC_PROCESSING: dict[str, dict[str, Any]] = {
    "1K": {"dist": "lognormal", "median": 17.0, "sigma": 0.234},
    "2K": {"dist": "lognormal", "median": 35.0, "sigma": 0.217},
    "4K": {"dist": "lognormal", "median": 60.0, "sigma": 0.246},
}


class RateLimitConfig(BaseModel):
    """Limits answered with 429; ``None``/0 switches a limit off.

    ``retry_after_s`` fixes the Retry-After value (fractional allowed, so tests need not sleep a
    whole second); left unset, Retry-After is computed and rounded up to whole seconds (min 1).
    """

    model_config = _FORBID

    requests_per_s: float | None = Field(default=None, ge=0)
    burst: int | None = Field(default=None, ge=1)
    max_concurrent_tasks: int | None = Field(default=None, ge=0)
    retry_after_s: float | None = Field(default=None, gt=0)
    # beyond max_concurrent_tasks: "reject" answers 429; "queue" accepts and keeps the task queued
    # (Rivya "queued", OdiRouter IN_QUEUE with queue_position) until one of the running ones finishes
    admission: Literal["reject", "queue"] = "reject"


class TaskFailedRates(BaseModel):
    """Probability of each OdiRouter failure type (Rivya reports any of them as generation_failed)."""

    model_config = _FORBID

    INFERENCE_FAILURE: float = Rate
    INFERENCE_TIMEOUT: float = Rate
    REQUEST_INVALID: float = Rate
    CONTENT_BLOCKED: float = Rate
    INTERNAL_SERVER_ERROR: float = Rate

    @model_validator(mode="after")
    def _total_at_most_one(self) -> TaskFailedRates:
        if self.total() > 1.0 + 1e-9:
            raise ValueError(f"task_failed rates add up to {self.total():g}; they must add up to at most 1")
        return self

    def total(self) -> float:
        return sum(self.model_dump().values())


class FaultConfig(BaseModel):
    """Fault rates in 0..1. Each is an independent, reproducible draw (see ``faults``)."""

    model_config = _FORBID

    http_5xx: float = Rate
    drop_connection: float = Rate
    drop_after_processing: float = Rate
    rate_limited: float = Rate
    rate_limited_burst_s: float = Field(default=1.0, gt=0)
    task_failed: TaskFailedRates = Field(default_factory=TaskFailedRates)
    corrupt_image: float = Rate
    wrong_size: float = Rate
    expired_url: float = Rate
    stuck_task: float = Rate
    drop_download: float = Rate


class AuthConfig(BaseModel):
    """Which API keys the sandbox treats as revoked, expired, etc.; empty lists mean "any key works"."""

    model_config = _FORBID

    allowed_keys: list[str] | None = None
    revoked_keys: list[str] = Field(default_factory=list)
    expired_keys: list[str] = Field(default_factory=list)
    scope_denied_keys: list[str] = Field(default_factory=list)
    public_api_disabled: bool = False


class ProviderConfig(BaseModel):
    model_config = _FORBID

    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    faults: FaultConfig = Field(default_factory=FaultConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)


class BillingConfig(BaseModel):
    """Prices and the wallets a fresh state directory starts with (and ``/_sandbox/reset`` restores)."""

    model_config = _FORBID

    rivya_credits_per_image: int = Field(default=8, ge=0)
    odirouter_usd_per_image: dict[Resolution, float] = Field(
        default_factory=lambda: {Resolution.R1K: 0.15, Resolution.R2K: 0.15, Resolution.R4K: 0.30}
    )
    rivya_initial_credits: int = Field(default=100_000, ge=0)
    odirouter_initial_usd: float = Field(default=1000.0, ge=0)

    @model_validator(mode="after")
    def _every_resolution_priced(self) -> BillingConfig:
        missing = [r.value for r in Resolution if r not in self.odirouter_usd_per_image]
        if missing:
            raise ValueError(f"odirouter_usd_per_image has no price for {', '.join(missing)}")
        return self


class SandboxConfig(BaseModel):
    model_config = _FORBID

    seed: int = 0
    time_scale: float = Field(default=1.0, ge=0)
    result_url_ttl_s: float = Field(default=3600.0, gt=0)
    idempotency_ttl_s: float = Field(default=24 * 3600.0, gt=0)
    settle_interval_s: float = Field(default=0.05, gt=0, le=5)
    render_cache_mb: int = Field(default=256, ge=0)
    max_upload_mb_default: float = Field(default=10.0, gt=0)
    max_upload_mb_nano_banana_pro: float = Field(default=30.0, gt=0)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    rivya: ProviderConfig = Field(default_factory=ProviderConfig)
    odirouter: ProviderConfig = Field(default_factory=ProviderConfig)
    wire: WireConfig = Field(default_factory=WireConfig)  # plausible non-default answer shapes (wire_shapes)

    def provider(self, provider: Provider | str) -> ProviderConfig:
        return self.rivya if Provider(provider) is Provider.RIVYA else self.odirouter

    def updated(self, partial: dict[str, Any]) -> SandboxConfig:
        """A new config with ``partial`` deep-merged in; a latency distribution is replaced whole.

        Raises pydantic ``ValidationError`` naming the offending field; ``self`` is never modified.
        """
        merged = _deep_merge(self.model_dump(mode="json"), partial)
        return SandboxConfig.model_validate(merged)

    @classmethod
    def zero_latency(cls, **fields: Any) -> SandboxConfig:
        """Tasks finish the moment they are created: what tests and benchmarks want."""
        zero = {"latency": {"queued": {"dist": "fixed", "value": 0}, "processing": {"dist": "fixed", "value": 0}}}
        return cls().updated({"rivya": zero, "odirouter": zero}).updated(fields)

    @classmethod
    def from_file(cls, path: str | Path) -> SandboxConfig:
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"{path}: sandbox config must be a .json or .toml file")
        return cls().updated(data)


def _deep_merge(base: dict[str, Any], partial: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(partial, dict):
        raise TypeError(f"a config update must be a JSON object, got {type(partial).__name__}")
    out = dict(base)
    for key, value in partial.items():
        current = out.get(key)
        # A mapping with "dist" is a whole distribution: merging uniform's low/high into a fixed one
        # would leave stray parameters behind, so it replaces instead.
        if isinstance(value, dict) and isinstance(current, dict) and "dist" not in value:
            out[key] = _deep_merge(current, value)
        else:
            out[key] = value
    return out
