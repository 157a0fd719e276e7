"""The one client factory: Dagster resources, ``nbpro run-cell`` and the benches build provider clients
here, so every client gets the same rate limiter (a token bucket per client), connection pool size and
policies, whoever asks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nbpro_pipeline.providers.base import ProviderClient
from nbpro_pipeline.providers.policies import PollPolicy, RetryPolicy
from nbpro_pipeline.providers.ratelimit import TokenBucket
from nbpro_pipeline.providers.registry import PROVIDERS


class ClientSpec(BaseModel):
    """Everything a client is made from; the key is a SecretStr so a spec never prints it."""

    model_config = ConfigDict(frozen=True)

    provider: str
    base_url: str
    api_key: SecretStr
    poll: PollPolicy = Field(default_factory=PollPolicy)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    requests_per_s: float = Field(default=20.0, gt=0, description="API calls per second, per client")
    burst: int = Field(default=40, ge=1)
    max_in_flight: int = Field(default=32, ge=1, description="sizes the connection pool")


def make_client(spec: ClientSpec, **extra: Any) -> ProviderClient:
    """A new client for ``spec``, of the provider the registry names; make it inside the event loop that
    will use it. ``extra`` goes to the client (a test's ``seed`` or ``transport``)."""
    return PROVIDERS[spec.provider].make_client(
        spec.base_url,
        spec.api_key,
        poll=spec.poll,
        retry=spec.retry,
        limiter=TokenBucket(spec.requests_per_s, spec.burst),
        max_connections=max(16, spec.max_in_flight * 2),
        **extra,
    )
