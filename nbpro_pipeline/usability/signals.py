"""An image's perceptual signals, from one bounded decode: ``imagehash.phash`` of its luminance, a 4x4
grid of mean colours, and how much of it is one colour.

The hash alone sees structure, not colour: two pictures with one layout in other colours hash alike
(the sandbox's do), so near-duplicates need the colour grid to agree as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import imagehash
import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from nbpro_pipeline.image_files import open_bounded

GRID_SIDE = 4
_SAMPLE_SIDE = 64  # pixels sampled (nearest, never averaged: noise must not read as flat) for uniformity
_DRAFT_SIDE = 1024  # JPEGs decode at 1/2 (2K) or 1/4 (4K) scale: cheaper, and fine noise survives it
_WORK_SIDE = 256  # the decoded image is box-reduced to about this before hashing (phash reads 32x32)
# Two samples are "one colour" when no channel differs by more than this (JPEG noise on a flat field
# stays within ~3).
UNIFORM_TOLERANCE = 8


class ImageSignals(BaseModel):
    """What a stored image looks like, in a few bytes (the ledger's ``image_phash``, ``image_colour_grid``
    and ``image_uniform_share``)."""

    model_config = ConfigDict(frozen=True)

    phash: str = Field(pattern=r"^[0-9a-f]{16}$")
    colour_grid: str = Field(pattern=r"^[0-9a-f]{96}$")  # 4x4 cells x RGB, row-major, one byte each
    uniform_share: float = Field(ge=0, le=1)  # share of sampled pixels within UNIFORM_TOLERANCE of the median


def measure_image(source: str | Path | BinaryIO) -> ImageSignals:
    """The signals of an image file; raises ``ImageProblem`` for bytes that do not decode (within the
    bounds of ``open_bounded``)."""
    return measure_reduced(source)[0]


def measure_reduced(source: str | Path | BinaryIO) -> tuple[ImageSignals, Image.Image]:
    """The signals, and the image box-reduced to about ``_WORK_SIDE`` in RGB that they were read from
    (what a thumbnail needs, without a second decode)."""
    with open_bounded(source) as img:
        img.draft("RGB", (_DRAFT_SIDE, _DRAFT_SIDE))  # JPEG only: the decoder skips what is not needed
        img.load()
        sample = img.resize((_SAMPLE_SIDE, _SAMPLE_SIDE), Image.Resampling.NEAREST).convert("RGB")
        rgb = _reduced(img)
    signals = ImageSignals(
        phash=str(imagehash.phash(rgb)), colour_grid=_colour_grid(rgb), uniform_share=_uniform_share(sample)
    )
    return signals, rgb


def _reduced(img: Image.Image) -> Image.Image:
    """The image in RGB, box-reduced to about ``_WORK_SIDE`` (reduce before converting where the mode
    allows: a 4K convert costs more than the whole reduce)."""
    factor = max(1, min(img.size) // _WORK_SIDE)
    if img.mode in ("RGB", "L", "RGBA", "LA"):
        return img.reduce(factor).convert("RGB")
    return img.convert("RGB").reduce(factor)


def _colour_grid(rgb: Image.Image) -> str:
    return rgb.resize((GRID_SIDE, GRID_SIDE), Image.Resampling.BOX, reducing_gap=2.0).tobytes().hex()


def _uniform_share(sample: Image.Image) -> float:
    pixels = np.asarray(sample, dtype=np.int16).reshape(-1, 3)
    median = np.median(pixels, axis=0)
    close = np.abs(pixels - median).max(axis=1) <= UNIFORM_TOLERANCE
    return round(float(close.mean()), 4)


def hash_distance(a: str, b: str) -> int:
    """Bits that differ between two perceptual hashes as the ledger keeps them (hex)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()  # as judge.py compares them in bulk: 64-bit integers
