"""What the provenance marks add to each stored image: bytes (XMP and C2PA apart) and time to sign.

For a PNG and a JPEG of each resolution's 1:1 size (noise, so they compress like photos rather than
like flat colour), marks one with the same lineage the engine writes: XMP (exiv2), then a C2PA
manifest signed with a throwaway ES256 certificate (the demo's kind). Times are medians of --repeat.

    .venv/bin/python bench/provenance_marks.py [--repeat 10] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time

from PIL import Image

from nbpro_pipeline.models.common import AspectRatio, Resolution, pixel_size
from nbpro_pipeline.provenance import ImageLineage, ProvenanceSigner
from nbpro_pipeline.provenance.democert import make_demo_credential
from nbpro_pipeline.provenance.manifest import sign
from nbpro_pipeline.provenance.xmp import write_xmp

LINEAGE = ImageLineage(
    prompt_id="bench-prompt-0001",
    prompt_sha256="a" * 64,
    provider="rivya",
    model="nano-banana-pro",
    task_id="gen_0123456789abcdef01234567",
    resolution="1K",
    aspect_ratio="1:1",
    output_format="png",
    cost="8",
    cost_unit="credits",
    run_id="0f0e0d0c-0b0a-0908-0706-050403020100",
    partition_key="rivya|1K",
    source_uri="s3://bucket/prompts/catalog.parquet",
    source_sha256="b" * 64,
    row_number=12,
    fingerprint="c" * 64,
    provider_sha256="d" * 64,
    pipeline_version="0.1.0",
    created_at="2026-12-01T12:00:00+00:00",
    references=("e" * 64,),
)


def _median_ms(fn, repeat: int) -> tuple[float, bytes]:
    times, out = [], b""
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line at the end")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cred = make_demo_credential(tmp)
        signer = ProvenanceSigner(cred.cert_path.read_bytes(), cred.key_path.read_bytes())
    figures = []
    for resolution in Resolution:
        size = pixel_size(AspectRatio.R1_1, resolution)
        picture = Image.effect_noise(size, 50).convert("RGB")
        for pil, mime in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
            buf = io.BytesIO()
            picture.save(buf, pil)
            raw = buf.getvalue()
            xmp_ms, with_xmp = _median_ms(lambda raw=raw: write_xmp(raw, LINEAGE), args.repeat)
            sign_ms, signed = _median_ms(
                lambda data=with_xmp, mime=mime: sign(data, mime, LINEAGE, signer, None), args.repeat
            )
            row = {
                "format": pil,
                "resolution": resolution.value,
                "image_bytes": len(raw),
                "xmp_bytes": len(with_xmp) - len(raw),
                "c2pa_bytes": len(signed) - len(with_xmp),
                "xmp_ms": xmp_ms,
                "sign_ms": sign_ms,
            }
            figures.append(row)
            print(
                f"{pil:<5} {resolution.value}  {len(raw):>10,} B  +XMP {row['xmp_bytes']:>5,} B ({xmp_ms:6.2f} ms)"
                f"  +C2PA {row['c2pa_bytes']:>5,} B (sign {sign_ms:6.2f} ms)"
            )
    if args.json:
        print(json.dumps({"bench": "provenance_marks", "repeat": args.repeat, "images": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
