"""The traits of the two shipped providers (see ``base.ProviderTraits``), from providers.md.

Kept apart from the clients' wire code so the facts the engine relies on (billing, idempotency, cancel,
limits) read as one table; each client exposes its row as ``client.traits``.
"""

from __future__ import annotations

from decimal import Decimal

from nbpro_pipeline.models.common import RIVYA_CREDITS_PER_IMAGE, RIVYA_MODEL_ID, Provider, Resolution
from nbpro_pipeline.models.ledger import COST_UNIT
from nbpro_pipeline.models.limits import PROVIDER_LIMITS
from nbpro_pipeline.providers.base import Billing, ProviderTraits

RIVYA_TRAITS = ProviderTraits(
    name=Provider.RIVYA,
    model_id=RIVYA_MODEL_ID,
    idempotent_submit=True,  # Idempotency-Key: a resend replays the original task, uncharged
    cancel=False,  # no cancel endpoint: a task past its deadline lives on and stays resumable
    admission="reject",  # a create beyond the plan's concurrency is answered 429 rate_limited
    # credits reserved at create and final credits once settled, per task, are the stated cost (a failed
    # task is refunded)
    billing=Billing(),
    cost_unit=COST_UNIT[Provider.RIVYA],
    cost_is_estimate=False,
    list_price={r: Decimal(RIVYA_CREDITS_PER_IMAGE) for r in Resolution},
    usd_per_unit=Decimal("0.0168"),
    limits=PROVIDER_LIMITS[Provider.RIVYA],
)

ODIROUTER_TRAITS = ProviderTraits(
    name=Provider.ODIROUTER,
    model_id="fal-ai/nano-banana-pro",  # what OdiRouter's endpoint nano_banana_pro serves
    idempotent_submit=False,  # no such header: a crash between send and journal can pay twice
    cancel=True,
    admission="queue",  # fal's queue: accepted, IN_QUEUE with a queue_position until a slot frees
    # no per-task charge documented: the price table applies to completed tasks, and to tasks cancelled
    # while running; a failure is not billed
    billing=Billing(cancelled_running_billed=True, cancelled_code="CANCELED"),
    cost_unit=COST_UNIT[Provider.ODIROUTER],
    cost_is_estimate=True,
    list_price={Resolution.R1K: Decimal("0.15"), Resolution.R2K: Decimal("0.15"), Resolution.R4K: Decimal("0.30")},
    limits=PROVIDER_LIMITS[Provider.ODIROUTER],
)
