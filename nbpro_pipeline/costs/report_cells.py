"""The cells a report groups by: their order (providers as the registry lists them, then resolutions; an
unknown one last), their cost unit and their price per image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd

from nbpro_pipeline.costs._ledger import quantize_cost
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import PROVIDERS

RESOLUTION_ORDER = {r.value: i for i, r in enumerate(Resolution)}
_LAST = 99


def known_cell(prices: PriceTable, provider: str | None, resolution: str | None) -> bool:
    """A provider and resolution the price table has a price for."""
    return provider is not None and prices.knows(provider) and resolution in RESOLUTION_ORDER


def cost_unit(prices: PriceTable, provider: str) -> str | None:
    return prices.unit(provider) if prices.knows(provider) else None


def by_provider_order(totals: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """``totals`` (keyed by provider name) in provider order, unknown providers last by name."""
    return dict(sorted(totals.items(), key=lambda kv: (PROVIDERS.order(kv[0]), kv[0])))


def cell_sort_key(provider: str, resolution: str) -> tuple[int, int, str, str]:
    return (PROVIDERS.order(provider), RESOLUTION_ORDER.get(resolution, _LAST), provider, resolution)


def sort_cells(df: pd.DataFrame, extra: Sequence[str] = (), *, resolution_first: bool = False) -> pd.DataFrame:
    """``df`` by provider and resolution (or resolution first); ``extra[0]`` before them, the rest after."""
    if df.empty:
        return df.reset_index(drop=True)
    keys = pd.DataFrame(
        {
            "_p": df["provider"].map(PROVIDERS.order),
            "_r": df["resolution"].map(RESOLUTION_ORDER).fillna(_LAST),
        },
        index=df.index,
    )
    order = ["_r", "_p"] if resolution_first else ["_p", "_r"]
    for name in extra:
        keys[name] = df[name]
    by = list(extra[:1]) + order + list(extra[1:]) if extra else order
    return df.loc[keys.sort_values(by, kind="stable").index].reset_index(drop=True)


def usd(prices: PriceTable, provider: str, amount: Decimal | None) -> Decimal | None:
    """``amount`` of ``provider``'s unit in USD, at the ledger's 6 places."""
    return None if amount is None else quantize_cost(prices.to_usd(provider, amount))


@dataclass(frozen=True)
class CellPrice:
    """What the price table says of one cell."""

    known: bool  # the price table has this provider and resolution
    per_image: Decimal | None
    is_estimate: bool  # the provider reports no cost: amounts come from the price table


class CellPrices:
    """``CellPrice`` per (provider, resolution), each looked up once."""

    def __init__(self, prices: PriceTable) -> None:
        self.prices = prices
        self._cache: dict[tuple[str, str], CellPrice] = {}

    def __call__(self, provider: str, resolution: str) -> CellPrice:
        key = (provider, resolution)
        if key not in self._cache:
            known = known_cell(self.prices, provider, resolution)
            self._cache[key] = CellPrice(
                known=known,
                per_image=self.prices.per_image(provider, resolution) if known else None,
                is_estimate=known and self.prices.is_estimate(provider),
            )
        return self._cache[key]
