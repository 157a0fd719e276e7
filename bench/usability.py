"""What judging a stored image costs, beside what marking it costs, and how well the verdict separates.

Per image, for a PNG and a JPEG of each resolution's 1:1 size (noise, like bench/provenance_marks.py,
and the sandbox's own picture): ``measure_image`` (one bounded decode reduced to ~256 px, its
``imagehash.phash``, the colour grid, the uniformity sample), then ``imagehash.phash`` of the full decoded
image (what a plain call costs), and the marks the engine already writes (XMP, then a signed C2PA
manifest). Times are medians of --repeat.

Then the verdict with the default thresholds (``EngineSettings``): pairs of distinct sandbox pictures
(--pictures per aspect ratio) taken for near-duplicates by the luminance hash alone and by the hash with
the colour grid; copies (JPEG q60, resized to 3/4) found; sandbox pictures and noise called blank.

    .venv/bin/python bench/usability.py [--repeat 5] [--pictures 150] [--json]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable

import imagehash
from PIL import Image

from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Resolution, pixel_size
from nbpro_pipeline.provenance import ProvenanceSigner
from nbpro_pipeline.provenance.democert import make_demo_credential
from nbpro_pipeline.provenance.manifest import sign
from nbpro_pipeline.provenance.xmp import write_xmp
from nbpro_pipeline.sandbox.images import ImageRenderer, RenderSpec, design_key
from nbpro_pipeline.usability import ImageSignals, measure_image
from nbpro_pipeline.usability.judge import CellJudge
from nbpro_pipeline.usability.signals import hash_distance

RENDERER = ImageRenderer()


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def _sandbox(prompt: str, fmt: str, aspect: str = "1:1", resolution: str = "1K") -> bytes:
    w, h = pixel_size(AspectRatio(aspect), Resolution(resolution))
    design = design_key("rivya", prompt, aspect, resolution, fmt)
    return RENDERER.render(RenderSpec(w, h, OutputFormat(fmt), prompt, f"{w}x{h}", design))


def _encode(img: Image.Image, pil: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, pil, **kw)
    return out.getvalue()


def per_image(repeat: int) -> list[dict]:
    """Milliseconds per image: the usability signals, imagehash's phash, and the marks."""
    from provenance_marks import LINEAGE  # the same lineage that bench marks with

    with tempfile.TemporaryDirectory() as tmp:
        cred = make_demo_credential(tmp)
        signer = ProvenanceSigner(cred.cert_path.read_bytes(), cred.key_path.read_bytes())
    rows = []
    for resolution in Resolution:
        size = pixel_size(AspectRatio.R1_1, resolution)
        noise = Image.effect_noise(size, 50).convert("RGB")
        for pil, mime, fmt in (("PNG", "image/png", "png"), ("JPEG", "image/jpeg", "jpg")):
            for kind, raw in (
                ("noise", _encode(noise, pil)),
                ("sandbox", _sandbox("a bench", fmt, resolution=resolution.value)),
            ):
                row = {"image": kind, "format": pil, "resolution": resolution.value, "image_bytes": len(raw)}
                row["signals_ms"] = _median_ms(lambda raw=raw: measure_image(io.BytesIO(raw)), repeat)
                full = _median_ms(lambda raw=raw: imagehash.phash(Image.open(io.BytesIO(raw))), repeat)
                row["imagehash_phash_ms"] = full
                with_xmp = write_xmp(raw, LINEAGE)
                row["marks_ms"] = round(
                    _median_ms(lambda raw=raw: write_xmp(raw, LINEAGE), repeat)
                    + _median_ms(lambda d=with_xmp, m=mime: sign(d, m, LINEAGE, signer, None), repeat), 2
                )  # fmt: skip
                rows.append(row)
                print(
                    f"{kind:<7} {pil:<4} {resolution.value}  {len(raw):>11,} B  signals {row['signals_ms']:7.2f} ms  "
                    f"imagehash {row['imagehash_phash_ms']:7.2f} ms  marks {row['marks_ms']:7.2f} ms"
                )
    return rows


def verdicts(pictures: int) -> dict:
    """False and true positives of the default thresholds on the sandbox's pictures and their copies."""
    judge = CellJudge(EngineSettings().usability_rules(), list)
    limit = judge.rules.duplicate_max_distance
    out: dict = {"pictures": 0, "pairs": 0, "hash_only_near_pairs": 0, "near_pairs": 0, "copies": 0, "copies_found": 0}
    blank_flagged = 0
    for aspect in ("1:1", "16:9", "9:16"):
        seen: list[ImageSignals] = []
        for i in range(pictures):
            raw = _sandbox(f"prompt {i} of {aspect}", "png", aspect)
            seen.append(measure_image(io.BytesIO(raw)))
            if i % 10 == 0:
                img = Image.open(io.BytesIO(raw)).convert("RGB")
                copy = _encode(img.resize((img.width * 3 // 4, img.height * 3 // 4)), "JPEG", quality=60)
                out["copies"] += 1
                out["copies_found"] += judge.near(measure_image(io.BytesIO(copy)), seen[-1]) is not None
        out["pictures"] += len(seen)
        blank_flagged += sum(s.uniform_share >= judge.rules.blank_min_share for s in seen)
        for a, b in itertools.combinations(seen, 2):
            out["pairs"] += 1
            out["hash_only_near_pairs"] += hash_distance(a.phash, b.phash) <= limit
            out["near_pairs"] += judge.near(a, b) is not None
    noise = [
        measure_image(io.BytesIO(_encode(Image.effect_noise((1024, 1024), s).convert("RGB"), "PNG")))
        for s in (10, 30, 50)
    ]
    out["blank_flagged"] = blank_flagged + sum(s.uniform_share >= judge.rules.blank_min_share for s in noise)
    out["max_uniform_share_noise"] = max(s.uniform_share for s in noise)
    print(f"verdicts: {json.dumps(out)}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pictures", type=int, default=150, help="sandbox pictures per aspect ratio")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args()
    images = per_image(args.repeat)
    judged = verdicts(args.pictures)
    if args.json:
        print(json.dumps({"bench": "usability", "repeat": args.repeat, "images": images, "verdicts": judged}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
