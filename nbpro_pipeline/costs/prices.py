"""What an image costs on each provider, in the provider's own unit, and a USD view for comparison.

Seeded from each registered provider's traits (its list prices, unit, USD rate and whether its figures
are estimates); a deployment overrides them from the environment. A provider that reports what each
task cost is exact; one that publishes no price is read from this table, and every figure derived from
it is labelled an estimate.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from pydantic import BaseModel, ConfigDict, Field

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import CostUnit
from nbpro_pipeline.providers.entry import ProviderEntry
from nbpro_pipeline.providers.registry import PROVIDERS


class ProviderPrice(BaseModel):
    model_config = ConfigDict(frozen=True)

    per_image: dict[Resolution, Decimal]
    unit: CostUnit
    usd_per_unit: Decimal = Field(ge=0)
    is_estimate: bool  # the amount charged is read from this table, not reported by the provider
    note: str = ""  # where the figures come from, for the reports and estimates that show them

    @classmethod
    def of(cls, entry: ProviderEntry) -> ProviderPrice:
        t = entry.traits
        return cls(
            per_image=dict(t.list_price),
            unit=t.cost_unit,
            usd_per_unit=t.usd_per_unit,
            is_estimate=t.cost_is_estimate,
            note=t.price_note,
        )


def _registered() -> dict[str, ProviderPrice]:
    return {entry.name: ProviderPrice.of(entry) for entry in PROVIDERS}


class PriceTable(BaseModel):
    """Prices per provider name; a provider not in the table (registered later, say) is priced from its
    traits on first use."""

    providers: dict[str, ProviderPrice] = Field(default_factory=_registered)

    def price(self, provider: str) -> ProviderPrice:
        found = self.providers.get(str(provider))
        return found if found is not None else ProviderPrice.of(PROVIDERS[provider])

    def knows(self, provider: str) -> bool:
        return str(provider) in self.providers or str(provider) in PROVIDERS

    def unit(self, provider: str) -> CostUnit:
        return self.price(provider).unit

    def per_image(self, provider: str, resolution: Resolution | str) -> Decimal:
        """Price of one successful image in the provider's unit (credits or USD)."""
        return self.price(provider).per_image[Resolution(resolution)]

    def to_usd(self, provider: str, amount: Decimal) -> Decimal:
        return amount * self.price(provider).usd_per_unit

    def is_estimate(self, provider: str) -> bool:
        """True where the amount charged is not reported by the provider but read from this table."""
        return self.price(provider).is_estimate

    def with_per_image(self, provider: str, per_image: Mapping[Resolution, Decimal]) -> PriceTable:
        """This table with ``provider``'s prices per image replaced where given."""
        price = self.price(provider)
        changed = price.model_copy(
            update={"per_image": {**price.per_image, **{Resolution(r): Decimal(v) for r, v in per_image.items()}}}
        )
        return PriceTable(providers={**self.providers, str(provider): changed})

    def with_usd_per_unit(self, rates: Mapping[str, Decimal]) -> PriceTable:
        """This table with the given providers' USD rates replaced."""
        changed = {p: self.price(p).model_copy(update={"usd_per_unit": Decimal(r)}) for p, r in rates.items()}
        return PriceTable(providers={**self.providers, **changed})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PriceTable:
        """Each registered provider's traits, overridden by ``NBPRO_<PROVIDER>_PRICE`` (every resolution),
        ``NBPRO_<PROVIDER>_PRICE_1K`` / ``_2K`` / ``_4K`` and ``NBPRO_<PROVIDER>_USD_PER_UNIT`` where set
        (``environ`` defaults to ``os.environ``; a provider's older names are read too, see its entry)."""
        env = os.environ if environ is None else environ
        return cls(providers={entry.name: _from_env(entry, env) for entry in PROVIDERS})


def _from_env(entry: ProviderEntry, env: Mapping[str, str]) -> ProviderPrice:
    price = ProviderPrice.of(entry)
    prefix = f"NBPRO_{entry.env_prefix}_"
    per_image = dict(price.per_image)
    every = _read(entry, env, prefix + "PRICE", whole=price.unit == "credits")
    for resolution in Resolution:
        one = _read(entry, env, f"{prefix}PRICE_{resolution.value}", whole=price.unit == "credits")
        if one is not None or every is not None:
            per_image[resolution] = one if one is not None else every  # type: ignore[assignment]
    rate = _read(entry, env, prefix + "USD_PER_UNIT")
    update = {"per_image": per_image} | ({"usd_per_unit": rate} if rate is not None else {})
    return price.model_copy(update=update)


def _read(entry: ProviderEntry, env: Mapping[str, str], name: str, *, whole: bool = False) -> Decimal | None:
    """A non-negative number from ``name`` (or the older name the provider's entry maps to it)."""
    older = next((old for old, new in entry.env_aliases.items() if new == name and env.get(old, "").strip()), None)
    shown = older or name
    raw = env.get(shown, "").strip()
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{shown}={raw!r} is not a number; write e.g. 0.15") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{shown}={raw!r} must be a finite number >= 0")
    if whole and value != value.to_integral_value():
        raise ValueError(f"{shown}={raw!r} must be a whole number: {entry.traits.display_name} counts whole units")
    return value
