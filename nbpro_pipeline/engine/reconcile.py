"""What the provider says a run's tasks cost, asked while the run still holds its client.

The audit compares this with the ledger; asking is part of producing the run's results (the client
belongs to the run), so the checks themselves only read.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from pydantic import BaseModel, Field

from nbpro_pipeline.providers.base import Billing, ProviderClient
from nbpro_pipeline.providers.errors import ProviderError


class ProviderCharges(BaseModel):
    """Per task id asked: what the provider's answer proves it charged, by the provider's billing rule."""

    charged: dict[str, Decimal] = Field(default_factory=dict)
    unreachable: list[str] = Field(default_factory=list)  # the provider could not be asked
    unverifiable: list[str] = Field(default_factory=list)  # a poll cannot tell (cancelled, maybe started)

    @property
    def asked(self) -> int:
        return len(self.charged) + len(self.unreachable) + len(self.unverifiable)


async def ask_provider(
    client: ProviderClient, billing: Billing, price: Decimal, task_ids: list[str], *, concurrency: int = 8
) -> ProviderCharges:
    sem = asyncio.Semaphore(concurrency)
    out = ProviderCharges()

    async def one(task_id: str) -> None:
        async with sem:
            try:
                snap = await client.poll(task_id)
            except ProviderError:
                out.unreachable.append(task_id)
                return
        charged = billing.from_poll(snap, price)
        if charged is None:
            out.unverifiable.append(task_id)
        else:
            out.charged[task_id] = charged

    await asyncio.gather(*(one(t) for t in task_ids))
    return out
