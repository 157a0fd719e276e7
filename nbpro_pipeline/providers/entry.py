"""A provider as the rest of the pipeline sees it: its traits, how to make its client, and where its
settings come from. Each provider package exports one ``ENTRY``; the registry holds them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nbpro_pipeline.providers.base import ProviderClient, ProviderTraits

# where ``make sandbox`` / ``make dev`` serve the built-in sandbox: the default base URLs point here
SANDBOX_ROOT = "http://127.0.0.1:8787"


class ProviderEntry(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    traits: ProviderTraits
    client: Callable[..., ProviderClient] = Field(
        description="makes the client: (base_url, api_key, **the factory's keyword arguments)"
    )
    env_prefix: str = Field(
        pattern=r"^[A-Z][A-Z0-9_]*$",
        description="<PREFIX>_API_KEY and <PREFIX>_BASE_URL; NBPRO_<PREFIX>_* for its settings",
    )
    base_url: str = Field(description="the real API")
    sandbox_path: str | None = Field(
        default=None, description="where the built-in sandbox serves this API under its root; None: it does not"
    )
    sandbox_key: str = Field(default="", description="a key the sandbox accepts, for the demo and make dev")
    env_aliases: dict[str, str] = Field(
        default_factory=dict, description="older environment variable names still read: old name -> current name"
    )

    @property
    def name(self) -> str:
        return self.traits.name

    def sandbox_url(self, root: str = SANDBOX_ROOT) -> str | None:
        """This API on a sandbox served at ``root``; None where the sandbox does not serve it."""
        return None if self.sandbox_path is None else root.rstrip("/") + self.sandbox_path

    def make_client(self, base_url: str, api_key: Any, **kw: Any) -> ProviderClient:
        return self.client(base_url, api_key, **kw)
