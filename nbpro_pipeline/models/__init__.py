"""Typed vocabulary shared by the clients, the sandbox and (later) the engine.

Wire models mirror each provider's JSON field by field (see ``rivya`` and ``odirouter``);
``common`` holds the provider-neutral enums, limits and the pixel-size table, once.
"""

from nbpro_pipeline.models.common import (
    ASPECT_RATIOS_FIXED,
    PIXEL_SIZES,
    AspectRatio,
    OutputFormat,
    Provider,
    Resolution,
    TaskState,
    nearest_aspect_ratio,
    pixel_size,
)
from nbpro_pipeline.models.limits import (
    MAX_PROMPT_CHARS,
    MAX_REFERENCES,
    MIN_PROMPT_CHARS,
    PROVIDER_LIMITS,
    ProviderLimits,
)
from nbpro_pipeline.models.request import GenerationRequest, RequestProblem

__all__ = [
    "ASPECT_RATIOS_FIXED",
    "MAX_PROMPT_CHARS",
    "MAX_REFERENCES",
    "MIN_PROMPT_CHARS",
    "PIXEL_SIZES",
    "PROVIDER_LIMITS",
    "ProviderLimits",
    "AspectRatio",
    "GenerationRequest",
    "OutputFormat",
    "Provider",
    "RequestProblem",
    "Resolution",
    "TaskState",
    "nearest_aspect_ratio",
    "pixel_size",
]
