"""OdiRouter's model API (nano_banana_pro): a fal-style queue of submit, status, response and cancel."""

from nbpro_pipeline.providers.entry import ProviderEntry
from nbpro_pipeline.providers.odirouter.client import DEFAULT_ODIROUTER_URL, OdiRouterClient
from nbpro_pipeline.providers.odirouter.traits import NAME, TRAITS

ENTRY = ProviderEntry(
    traits=TRAITS,
    client=OdiRouterClient,
    env_prefix="ODIROUTER",
    base_url=DEFAULT_ODIROUTER_URL,
    sandbox_path="/model",
    sandbox_key="odr_sandbox_demo_key",
    env_aliases={
        **{f"NBPRO_ODIROUTER_USD_{r}": f"NBPRO_ODIROUTER_PRICE_{r}" for r in ("1K", "2K", "4K")},
        "NBPRO_ODIROUTER_MAX_USD_PER_RUN": "NBPRO_ODIROUTER_MAX_PER_RUN",
        "NBPRO_ODIROUTER_MAX_USD_PER_DAY": "NBPRO_ODIROUTER_MAX_PER_DAY",
    },
)

__all__ = ["ENTRY", "NAME", "TRAITS", "OdiRouterClient"]
