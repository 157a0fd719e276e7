"""Rivya Public API v1 (nano-banana-pro): async tasks, credits, idempotency keys, a Files API."""

from nbpro_pipeline.providers.entry import ProviderEntry
from nbpro_pipeline.providers.rivya.client import DEFAULT_RIVYA_URL, RivyaClient
from nbpro_pipeline.providers.rivya.traits import KEY_PREFIX, NAME, TRAITS

ENTRY = ProviderEntry(
    traits=TRAITS,
    client=RivyaClient,
    env_prefix="RIVYA",
    base_url=DEFAULT_RIVYA_URL,
    sandbox_path="",
    sandbox_key=KEY_PREFIX + "sandbox_demo_key",
    env_aliases={
        "NBPRO_RIVYA_CREDITS_PER_IMAGE": "NBPRO_RIVYA_PRICE",
        "NBPRO_RIVYA_USD_PER_CREDIT": "NBPRO_RIVYA_USD_PER_UNIT",
        "NBPRO_RIVYA_MAX_CREDITS_PER_RUN": "NBPRO_RIVYA_MAX_PER_RUN",
        "NBPRO_RIVYA_MAX_CREDITS_PER_DAY": "NBPRO_RIVYA_MAX_PER_DAY",
    },
)

__all__ = ["ENTRY", "NAME", "TRAITS", "RivyaClient"]
