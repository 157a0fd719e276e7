"""What the pipeline knows about OdiRouter (providers.md section 2), in one place: its limits, billing,
prices and how it is shown. The client, the wire models and the registry entry read these."""

from __future__ import annotations

from decimal import Decimal

from nbpro_pipeline.models.common import OutputFormat, Resolution
from nbpro_pipeline.models.limits import ProviderLimits
from nbpro_pipeline.providers.base import Billing, ProviderTraits

NAME = "odirouter"
ENDPOINT_ID = "nano_banana_pro"

LIMITS = ProviderLimits(
    display_name="OdiRouter",
    max_prompt_chars=2_500,
    max_references=14,
    aspect_auto=False,
    output_formats=(OutputFormat.PNG,),
    references="url",
)

TRAITS = ProviderTraits(
    name=NAME,
    model_id="fal-ai/nano-banana-pro",  # what OdiRouter's endpoint nano_banana_pro serves
    idempotent_submit=False,  # no such header: a crash between send and journal can pay twice
    cancel=True,
    admission="queue",  # fal's queue: accepted, IN_QUEUE with a queue_position until a slot frees
    # no per-task charge documented: the price table applies to completed tasks, and to tasks cancelled
    # while running; a failure is not billed
    billing=Billing(cancelled_running_billed=True, cancelled_code="CANCELED"),
    cost_unit="usd",
    cost_is_estimate=True,
    # unpublished: fal.ai's public price for the same model
    list_price={Resolution.R1K: Decimal("0.15"), Resolution.R2K: Decimal("0.15"), Resolution.R4K: Decimal("0.30")},
    limits=LIMITS,
    price_note="OdiRouter publishes no price: its figures come from the configured price table",
    chart_colours=("#fdae6b", "#f16913", "#a63603"),
)
