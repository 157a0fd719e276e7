"""What a gallery tile costs with and without the image's stored thumbnail, and what storing it costs.

For --images pictures of one resolution (the sandbox's picture, saved as an RGB PNG as a real provider
sends it), in a fresh storage root:

- placing: what the engine adds per image to the decode it already makes for the usability signals
  (``thumbnail_jpeg`` of the reduced image, then the write under ``thumbnails/``);
- a tile without a thumbnail: ``thumbnail_data_uri`` of the image itself (a full decode), as every page
  build did before thumbnails were stored, and as it still does for an image without one;
- a tile with one: the same call through ``thumbnail_opener`` (a stat of the image, then the small JPEG).

Times are CPU medians of --repeat passes over all images, per image; bytes are what a tile reads.

    .venv/bin/python bench/gallery_thumbnails.py [--images 40] [--resolution 4K] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable

from PIL import Image

from nbpro_pipeline.image_files import THUMBNAIL_SIDE, thumbnail_data_uri, thumbnail_jpeg
from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Resolution, pixel_size
from nbpro_pipeline.presentation.thumbnails import thumbnail_opener
from nbpro_pipeline.sandbox.images import ImageRenderer, RenderSpec, design_key
from nbpro_pipeline.storage import Storage
from nbpro_pipeline.usability import measure_reduced


def _picture(i: int, resolution: Resolution) -> bytes:
    w, h = pixel_size(AspectRatio("1:1"), resolution)
    design = design_key("bench", str(i), resolution.value)
    png = ImageRenderer().render(RenderSpec(w, h, OutputFormat.PNG, f"picture {i}", f"{w}x{h}", design))
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(out, "PNG")
    return out.getvalue()


def _cpu_ms_per_image(fn: Callable[[str], object], uris: list[str], repeat: int) -> float:
    passes = []
    for _ in range(repeat):
        started = time.process_time()
        for uri in uris:
            fn(uri)
        passes.append((time.process_time() - started) / len(uris))
    return round(statistics.median(passes) * 1000, 2)


def run(images: int, resolution: Resolution, repeat: int) -> dict:
    storage = Storage(tempfile.mkdtemp(prefix="nbpro-bench-thumbs-"))
    uris, image_bytes = [], 0
    for i in range(images):
        data = _picture(i, resolution)
        path = storage.image_path("rivya", resolution, f"p{i}", f"{i:08x}", "png")
        storage.write_bytes(path, data)
        uris.append(storage.uri(path))
        image_bytes += len(data)
    reduced = {uri: measure_reduced(uri)[1] for uri in uris}

    def place(uri: str) -> None:
        storage.write_bytes(storage.thumbnail_path(uri), thumbnail_jpeg(reduced[uri]))

    def tile(open_file: Callable[[str], object]) -> Callable[[str], object]:
        def one(uri: str) -> str:
            with open_file(uri) as fh:
                return thumbnail_data_uri(fh, THUMBNAIL_SIDE, quality=70)

        return one

    placing = _cpu_ms_per_image(place, uris, repeat)
    with_thumb = _cpu_ms_per_image(tile(thumbnail_opener(storage)), uris, repeat)
    thumb_bytes = sum(len(storage.read_bytes(storage.thumbnail_path(u))) for u in uris)
    without = _cpu_ms_per_image(tile(storage.fs.open), uris, repeat)
    return {
        "resolution": resolution.value,
        "images": images,
        "placing_ms_per_image": placing,
        "tile_ms_without_thumbnail": without,
        "tile_ms_with_thumbnail": with_thumb,
        "tile_speedup": round(without / with_thumb, 1) if with_thumb else None,
        "bytes_read_per_tile_without": image_bytes // images,
        "bytes_read_per_tile_with": thumb_bytes // images,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--resolution", choices=[r.value for r in Resolution], default="4K")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args()
    figures = run(args.images, Resolution(args.resolution), args.repeat)
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    if args.json:
        print(json.dumps({"bench": "gallery_thumbnails", **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
