"""Typed, provider-neutral vocabulary: enums, the pixel-size table, limits, requests, prompt rows and the
ledger's schema. Each provider's wire models live in its own package under ``providers/``.
"""

from nbpro_pipeline.models.common import (
    ASPECT_RATIOS_FIXED,
    PIXEL_SIZES,
    AspectRatio,
    OutputFormat,
    Resolution,
    TaskState,
    nearest_aspect_ratio,
    pixel_size,
)
from nbpro_pipeline.models.limits import ProviderLimits
from nbpro_pipeline.models.request import GenerationRequest, RequestProblem

__all__ = [
    "ASPECT_RATIOS_FIXED",
    "PIXEL_SIZES",
    "ProviderLimits",
    "AspectRatio",
    "GenerationRequest",
    "OutputFormat",
    "RequestProblem",
    "Resolution",
    "TaskState",
    "nearest_aspect_ratio",
    "pixel_size",
]
