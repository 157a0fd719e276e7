"""What the pipeline knows about Rivya (providers.md section 1), in one place: its limits, billing,
prices and how it is shown. The client, the wire models and the registry entry read these."""

from __future__ import annotations

from decimal import Decimal

from nbpro_pipeline.models.common import OutputFormat, Resolution
from nbpro_pipeline.models.limits import ProviderLimits
from nbpro_pipeline.providers.base import Billing, ProviderTraits

NAME = "rivya"
MODEL_ID = "nano-banana-pro"
CREDITS_PER_IMAGE = 8  # billing type FIXED: any resolution
MAX_FILE_BYTES = 30 * 1024 * 1024  # Files API, for nano-banana-pro
FILE_MIME_TYPES = ("image/jpeg", "image/png", "image/webp")
KEY_PREFIX = "rvya_sk_"

LIMITS = ProviderLimits(
    display_name="Rivya",
    max_prompt_chars=10_000,
    max_references=8,
    aspect_auto=True,
    output_formats=(OutputFormat.PNG, OutputFormat.JPG),
    references="upload",
    max_reference_bytes=MAX_FILE_BYTES,
)

TRAITS = ProviderTraits(
    name=NAME,
    model_id=MODEL_ID,
    idempotent_submit=True,  # Idempotency-Key: a resend replays the original task, uncharged
    cancel=False,  # no cancel endpoint: a task past its deadline lives on and stays resumable
    admission="reject",  # a create beyond the plan's concurrency is answered 429 rate_limited
    # credits reserved at create and final credits once settled, per task, are the stated cost (a failed
    # task is refunded)
    billing=Billing(),
    cost_unit="credits",
    cost_is_estimate=False,
    list_price={r: Decimal(CREDITS_PER_IMAGE) for r in Resolution},
    # no published USD price for a credit: Google's reference $0.134/image at 1K-2K over 8 credits, rounded
    usd_per_unit=Decimal("0.0168"),
    limits=LIMITS,
    price_note="Rivya reports the credits each task cost; a credit's USD price is an assumption to configure",
    pricing_currency="QRC",  # Rivya credits (docs/focus.md)
    chart_colours=("#9ecae1", "#4292c6", "#08519c"),
)
