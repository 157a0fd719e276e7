"""The fixed facts of one cell run that every step reads: the provider's traits, the cell, the storage,
the run's lineage, the settings and the price of an image in the provider's unit."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.engine.outcomes import Charging
from nbpro_pipeline.engine.settings import EngineSettings, RunInfo
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import CostUnit
from nbpro_pipeline.providers.base import ProviderTraits
from nbpro_pipeline.storage.filesystem import Storage


@dataclass(frozen=True)
class CellPrice:
    per_image: Decimal
    unit: CostUnit
    is_estimate: bool
    usd_per_unit: Decimal

    def to_usd(self, amount: Decimal) -> Decimal:
        return amount * self.usd_per_unit


def cell_price(traits: ProviderTraits, prices: PriceTable, resolution: Resolution) -> CellPrice:
    """The configured ``PriceTable``'s price for the cell; a provider it does not hold (one not in the
    registry, made by hand) is priced from its own traits."""
    if prices.knows(traits.name):
        p = traits.name
        return CellPrice(
            prices.per_image(p, resolution), prices.unit(p), prices.is_estimate(p), prices.to_usd(p, Decimal(1))
        )
    return CellPrice(traits.list_price[resolution], traits.cost_unit, traits.cost_is_estimate, traits.usd_per_unit)


@dataclass(frozen=True)
class Cell:
    traits: ProviderTraits
    resolution: Resolution
    storage: Storage
    run: RunInfo
    settings: EngineSettings
    price: CellPrice
    ledger_id: str

    @property
    def name(self) -> str:
        return str(self.traits.name)

    def charging(self, earlier: Decimal = Decimal(0)) -> Charging:
        return Charging(self.traits.billing, self.price.per_image, earlier)
