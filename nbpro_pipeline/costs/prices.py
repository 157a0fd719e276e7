"""What an image costs on each provider, in the provider's own unit, and a USD view for comparison.

Rivya publishes its price (8 credits per image, any resolution) and reports credits per task, so its
figures are exact. OdiRouter publishes no price: its table defaults to fal.ai's public price for the
same model, is configurable, and every figure derived from it is labelled an estimate. Rivya credits
have no published dollar price either, so ``rivya_usd_per_credit`` is an assumption to configure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, Field

from nbpro_pipeline.models.common import RIVYA_CREDITS_PER_IMAGE, Provider, Resolution
from nbpro_pipeline.models.ledger import COST_UNIT, CostUnit


class PriceTable(BaseModel):
    rivya_credits_per_image: int = Field(default=RIVYA_CREDITS_PER_IMAGE, ge=0)
    # Assumption: Google's reference $0.134/image at 1K-2K over 8 credits, rounded. Configure yours.
    rivya_usd_per_credit: Decimal = Field(default=Decimal("0.0168"), ge=0)
    odirouter_usd_per_image: dict[Resolution, Decimal] = Field(
        default_factory=lambda: {
            Resolution.R1K: Decimal("0.15"),
            Resolution.R2K: Decimal("0.15"),
            Resolution.R4K: Decimal("0.30"),
        }
    )

    def unit(self, provider: Provider) -> CostUnit:
        return COST_UNIT[provider]

    def per_image(self, provider: Provider, resolution: Resolution) -> Decimal:
        """Price of one successful image in the provider's unit (credits or USD)."""
        if provider == Provider.RIVYA:
            return Decimal(self.rivya_credits_per_image)
        return self.odirouter_usd_per_image[resolution]

    def to_usd(self, provider: Provider, amount: Decimal) -> Decimal:
        return amount * self.rivya_usd_per_credit if provider == Provider.RIVYA else amount

    def is_estimate(self, provider: Provider) -> bool:
        """True where the amount charged is not reported by the provider but read from this table."""
        return provider == Provider.ODIROUTER

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PriceTable:
        """Defaults overridden by ``NBPRO_RIVYA_CREDITS_PER_IMAGE``, ``NBPRO_RIVYA_USD_PER_CREDIT`` and
        ``NBPRO_ODIROUTER_USD_1K`` / ``_2K`` / ``_4K`` where set (``environ`` defaults to ``os.environ``)."""
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}

        def read(name: str) -> Decimal | None:
            raw = env.get(name, "").strip()
            if not raw:
                return None
            try:
                value = Decimal(raw)
            except InvalidOperation:
                raise ValueError(f"{name}={raw!r} is not a number; write e.g. 0.15") from None
            if not value.is_finite() or value < 0:
                raise ValueError(f"{name}={raw!r} must be a finite number >= 0")
            return value

        if (credits := read("NBPRO_RIVYA_CREDITS_PER_IMAGE")) is not None:
            if credits != credits.to_integral_value():
                raise ValueError(f"NBPRO_RIVYA_CREDITS_PER_IMAGE={credits} must be a whole number of credits")
            data["rivya_credits_per_image"] = int(credits)
        if (usd_per_credit := read("NBPRO_RIVYA_USD_PER_CREDIT")) is not None:
            data["rivya_usd_per_credit"] = usd_per_credit
        odirouter = dict(cls().odirouter_usd_per_image)
        for resolution in Resolution:
            if (price := read(f"NBPRO_ODIROUTER_USD_{resolution.value}")) is not None:
                odirouter[resolution] = price
        data["odirouter_usd_per_image"] = odirouter
        return cls.model_validate(data)
