"""Regenerate ``catalog.parquet`` and ``refs/swatch.png`` (deterministic: same bytes on every run).

    .venv/bin/python examples/prompts/make_examples.py

The sample tables are the demo's input, so they stay small: per (provider, resolution) cell at most
about a dozen eligible rows. ``products.csv`` and ``scenes.tsv`` are written by hand; this script writes
the two files that cannot be. ``catalog.parquet`` holds the one deliberately bad row of the set: a
prompt of about 2600 characters, fine for Rivya (10000) and too long for OdiRouter (2500).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def swatch_png(path: Path) -> None:
    """A 96x96 fabric-like swatch: diagonal stripes in two blues (a few KB)."""
    image = Image.new("RGB", (96, 96), (32, 64, 128))
    draw = ImageDraw.Draw(image)
    for x in range(-96, 96, 12):
        draw.line([(x, 0), (x + 96, 96)], fill=(96, 144, 208), width=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)


def long_prompt() -> str:
    parts = [
        "A full-page catalog spread for a handmade linen armchair, photographed in a sunlit Scandinavian living room.",
    ]
    details = [
        "the seat cushion is plump and slightly creased where someone just sat",
        "the frame is solid ash with a soft oiled finish and visible grain",
        "a wool throw in oatmeal tones hangs over the left armrest",
        "a low walnut side table holds a stack of design books and a ceramic vase with dried grasses",
        "morning light falls through sheer curtains and draws long soft shadows across a pale oak floor",
        "the wall behind is painted warm white with a single framed botanical print",
        "a jute rug with a subtle herringbone weave lies under the chair",
        "the camera is at seat height, a 50 mm lens, aperture f/4, everything in focus from armrest to backrest",
        "colors are natural and slightly desaturated, like a printed interiors magazine",
        "no people, no text, no logos, no clutter",
    ]
    for round_ in range(1, 5):
        parts.extend(f"Detail {round_}.{k + 1}: {d}." for k, d in enumerate(details))
    text = " ".join(parts)
    return text[:2600]


def catalog_parquet(path: Path) -> None:
    table = pa.table(
        {
            "id": ["cat-vase", "cat-cushion", "cat-armchair-spread"],
            "prompt": [
                "A tall hand-thrown stoneware vase with a speckled glaze, single eucalyptus branch, neutral backdrop",
                "A square cushion covered in the fabric of the reference swatch, on a light grey sofa, soft daylight",
                long_prompt(),
            ],
            "aspect_ratio": ["2:3", "1:1", "3:2"],
            "provider": [None, "rivya", None],  # a local reference: OdiRouter cannot take uploads
            "reference_images": pa.array([[], ["refs/swatch.png"], []], pa.list_(pa.string())),
            "sku": ["V-1001", "C-2040", "A-3300"],
        }
    )
    pq.write_table(table, path, compression="zstd")


def main() -> None:
    swatch_png(HERE / "refs" / "swatch.png")
    catalog_parquet(HERE / "catalog.parquet")
    print(f"wrote {HERE / 'refs' / 'swatch.png'} and {HERE / 'catalog.parquet'}")


if __name__ == "__main__":
    main()
