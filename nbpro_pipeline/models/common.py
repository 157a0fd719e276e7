"""Enums, per-provider limits and Gemini 3 Pro Image's output pixel sizes.

The pixel table is the single source of truth for "what size should this image be": the sandbox
renders from it and the pipeline validates downloads against it.
"""

from __future__ import annotations

from enum import StrEnum


class Resolution(StrEnum):
    R1K = "1K"
    R2K = "2K"
    R4K = "4K"


class AspectRatio(StrEnum):
    R1_1 = "1:1"
    R2_3 = "2:3"
    R3_2 = "3:2"
    R3_4 = "3:4"
    R4_3 = "4:3"
    R4_5 = "4:5"
    R5_4 = "5:4"
    R9_16 = "9:16"
    R16_9 = "16:9"
    R21_9 = "21:9"
    AUTO = "auto"  # the model picks (1:1 without references); only where a provider's limits allow it


class OutputFormat(StrEnum):
    """What a provider may answer in; ``jpg`` is the wire spelling of JPEG where a provider takes one."""

    PNG = "png"
    JPG = "jpg"

    @property
    def mime_type(self) -> str:
        return "image/png" if self is OutputFormat.PNG else "image/jpeg"

    @property
    def pil_format(self) -> str:
        return "PNG" if self is OutputFormat.PNG else "JPEG"


class TaskState(StrEnum):
    """Provider-neutral task lifecycle, whatever words a provider uses for it.

    ``UNKNOWN`` is what a word nobody mapped becomes: never terminal (the task is polled again) and
    never free (a task in it holds its list price)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED)


ASPECT_RATIOS_FIXED: tuple[AspectRatio, ...] = tuple(a for a in AspectRatio if a is not AspectRatio.AUTO)

# (aspect ratio, resolution) -> (width, height); from https://ai.google.dev/gemini-api/docs/image-generation
PIXEL_SIZES: dict[tuple[AspectRatio, Resolution], tuple[int, int]] = {
    (AspectRatio.R1_1, Resolution.R1K): (1024, 1024),
    (AspectRatio.R1_1, Resolution.R2K): (2048, 2048),
    (AspectRatio.R1_1, Resolution.R4K): (4096, 4096),
    (AspectRatio.R2_3, Resolution.R1K): (848, 1264),
    (AspectRatio.R2_3, Resolution.R2K): (1696, 2528),
    (AspectRatio.R2_3, Resolution.R4K): (3392, 5056),
    (AspectRatio.R3_2, Resolution.R1K): (1264, 848),
    (AspectRatio.R3_2, Resolution.R2K): (2528, 1696),
    (AspectRatio.R3_2, Resolution.R4K): (5056, 3392),
    (AspectRatio.R3_4, Resolution.R1K): (896, 1200),
    (AspectRatio.R3_4, Resolution.R2K): (1792, 2400),
    (AspectRatio.R3_4, Resolution.R4K): (3584, 4800),
    (AspectRatio.R4_3, Resolution.R1K): (1200, 896),
    (AspectRatio.R4_3, Resolution.R2K): (2400, 1792),
    (AspectRatio.R4_3, Resolution.R4K): (4800, 3584),
    (AspectRatio.R4_5, Resolution.R1K): (928, 1152),
    (AspectRatio.R4_5, Resolution.R2K): (1856, 2304),
    (AspectRatio.R4_5, Resolution.R4K): (3712, 4608),
    (AspectRatio.R5_4, Resolution.R1K): (1152, 928),
    (AspectRatio.R5_4, Resolution.R2K): (2304, 1856),
    (AspectRatio.R5_4, Resolution.R4K): (4608, 3712),
    (AspectRatio.R9_16, Resolution.R1K): (768, 1376),
    (AspectRatio.R9_16, Resolution.R2K): (1536, 2752),
    (AspectRatio.R9_16, Resolution.R4K): (3072, 5504),
    (AspectRatio.R16_9, Resolution.R1K): (1376, 768),
    (AspectRatio.R16_9, Resolution.R2K): (2752, 1536),
    (AspectRatio.R16_9, Resolution.R4K): (5504, 3072),
    (AspectRatio.R21_9, Resolution.R1K): (1584, 672),
    (AspectRatio.R21_9, Resolution.R2K): (3168, 1344),
    (AspectRatio.R21_9, Resolution.R4K): (6336, 2688),
}


def pixel_size(aspect: AspectRatio | str, resolution: Resolution | str) -> tuple[int, int]:
    """The exact (width, height) the model must return; ``auto`` has no fixed size."""
    aspect, resolution = AspectRatio(aspect), Resolution(resolution)
    if aspect is AspectRatio.AUTO:
        raise ValueError("aspect ratio 'auto' has no fixed pixel size; resolve it with nearest_aspect_ratio()")
    return PIXEL_SIZES[(aspect, resolution)]


def nearest_aspect_ratio(width: int, height: int) -> AspectRatio:
    """The table ratio closest (in log space, so 2:1 and 1:2 are equally far from 1:1) to width:height."""
    import math

    target = math.log(width / height)

    def distance(a: AspectRatio) -> float:
        w, h = PIXEL_SIZES[(a, Resolution.R1K)]
        return abs(math.log(w / h) - target)

    return min(ASPECT_RATIOS_FIXED, key=distance)
