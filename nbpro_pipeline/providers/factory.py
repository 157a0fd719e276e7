"""The one client factory: Dagster resources, ``nbpro run-cell`` and the benches build provider clients
here, so every client gets the same rate limiter (a token bucket per client), connection pool size and
policies, whoever asks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nbpro_pipeline.models.common import Provider
from nbpro_pipeline.providers.http import HttpProviderClient
from nbpro_pipeline.providers.odirouter import OdiRouterClient
from nbpro_pipeline.providers.policies import PollPolicy, RetryPolicy
from nbpro_pipeline.providers.ratelimit import TokenBucket
from nbpro_pipeline.providers.rivya import RivyaClient

CLIENTS: dict[Provider, type[HttpProviderClient]] = {Provider.RIVYA: RivyaClient, Provider.ODIROUTER: OdiRouterClient}


class ClientSpec(BaseModel):
    """Everything a client is made from; the key is a SecretStr so a spec never prints it."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    base_url: str
    api_key: SecretStr
    poll: PollPolicy = Field(default_factory=PollPolicy)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    requests_per_s: float = Field(default=20.0, gt=0, description="API calls per second, per client")
    burst: int = Field(default=40, ge=1)
    max_in_flight: int = Field(default=32, ge=1, description="sizes the connection pool")


def make_client(spec: ClientSpec, **extra: Any) -> HttpProviderClient:
    """A new client for ``spec``; make it inside the event loop that will use it. ``extra`` goes to
    the client (a test's ``seed`` or ``transport``)."""
    return CLIENTS[spec.provider](
        spec.base_url,
        spec.api_key,
        poll=spec.poll,
        retry=spec.retry,
        limiter=TokenBucket(spec.requests_per_s, spec.burst),
        max_connections=max(16, spec.max_in_flight * 2),
        **extra,
    )
