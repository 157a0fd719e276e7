"""Image checks and byte-level lineage embedding: pixels untouched, defects named, contact sheets bounded."""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import pytest
from PIL import Image

from nbpro_pipeline.image_files import (
    LINEAGE_KEY,
    ImageInfo,
    ImageProblem,
    check_image,
    copy_with_lineage,
    inspect_image,
    read_lineage,
)
from nbpro_pipeline.models.common import ASPECT_RATIOS_FIXED, AspectRatio, OutputFormat, Resolution, pixel_size
from nbpro_pipeline.provenance import RequestParams, StoredLineage

LINEAGE = StoredLineage(
    prompt_id="p-001",
    provider="rivya",
    model="nano-banana-pro",
    task_id="gen_abc",
    run_id="run-1",
    prompt="a lighthouse — at dusk, «quoted» ünïcødé 名前",
    params=RequestParams(aspect_ratio="16:9"),
)


def picture(w: int = 96, h: int = 64) -> Image.Image:
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 7) % 256, (y * 11) % 256, (x * y) % 256) for y in range(h) for x in range(w)])
    return img


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("fmt", "pil"), [(OutputFormat.PNG, "PNG"), (OutputFormat.JPG, "JPEG")])
def test_lineage_round_trip_keeps_pixels_bit_for_bit(tmp_path, fmt, pil):
    original = encode(picture(), pil)
    src = write(tmp_path, f"src.{fmt.value}", original)
    dst = tmp_path / f"dst.{fmt.value}"
    with open(src, "rb") as s, open(dst, "wb") as d:
        sha, size = copy_with_lineage(s, d, fmt, LINEAGE)
    data = dst.read_bytes()
    assert sha == hashlib.sha256(data).hexdigest() and size == len(data)
    assert len(data) > len(original)
    assert read_lineage(dst) == LINEAGE
    assert read_lineage(src) is None
    with Image.open(src) as a, Image.open(dst) as b:
        assert a.format == b.format == pil and a.size == b.size
        assert a.tobytes() == b.tobytes()  # decoded pixels identical: nothing was re-encoded
    # the annotated file still passes the structural check (a PNG's CRCs, a JPEG's EOI)
    assert inspect_image(dst) == ImageInfo(format=fmt, width=96, height=64)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        chunks.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + n]))
        i += 12 + n
    return chunks


def test_png_lineage_is_a_text_chunk_before_the_image_data(tmp_path):
    src = write(tmp_path, "a.png", encode(picture(8, 8), "PNG"))
    out = io.BytesIO()
    with open(src, "rb") as s:
        copy_with_lineage(s, out, OutputFormat.PNG, LINEAGE)
    data = out.getvalue()
    assert data[:33] == src.read_bytes()[:33]  # signature and IHDR untouched
    kinds = [kind for kind, _ in _png_chunks(data)]
    texts = [body for kind, body in _png_chunks(data) if kind == b"tEXt"]
    assert kinds.index(b"tEXt") < kinds.index(b"IDAT") and kinds.index(b"iTXt") < kinds.index(b"IDAT")
    assert texts[0].startswith(LINEAGE_KEY.encode() + b"\x00")
    original_idat = [body for kind, body in _png_chunks(src.read_bytes()) if kind == b"IDAT"]
    assert [body for kind, body in _png_chunks(data) if kind == b"IDAT"] == original_idat


def test_huge_jpeg_lineage_is_bounded_to_one_comment_segment(tmp_path):
    src = write(tmp_path, "a.jpg", encode(picture(16, 16), "JPEG"))
    out = tmp_path / "out.jpg"
    with open(src, "rb") as s, open(out, "wb") as d:
        copy_with_lineage(s, d, OutputFormat.JPG, LINEAGE.model_copy(update={"prompt": "x" * 100_000}))
    with Image.open(out) as im:
        assert im.size == (16, 16)
        im.load()


@pytest.mark.parametrize("fmt", [OutputFormat.PNG, OutputFormat.JPG])
def test_copy_refuses_bytes_that_are_not_the_format(tmp_path, fmt):
    with pytest.raises(ImageProblem) as exc:
        copy_with_lineage(io.BytesIO(b"GIF89a" + b"\x00" * 64), io.BytesIO(), fmt, LINEAGE)
    assert exc.value.code == "corrupt_image"


@pytest.mark.parametrize("pil", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9])
def test_truncated_files_are_corrupt(tmp_path, pil, keep):
    data = encode(picture(), pil)
    path = write(tmp_path, "t.img", data[: max(1, int(len(data) * keep))] if keep else b"")
    with pytest.raises(ImageProblem) as exc:
        inspect_image(path)
    assert exc.value.code == "corrupt_image"


def test_png_with_a_flipped_byte_is_corrupt(tmp_path):
    data = bytearray(encode(picture(), "PNG"))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ImageProblem) as exc:
        inspect_image(write(tmp_path, "x.png", bytes(data)))
    assert exc.value.code == "corrupt_image"


@pytest.mark.parametrize("pil", ["GIF", "WEBP", "BMP"])
def test_other_formats_are_format_mismatch(tmp_path, pil):
    path = write(tmp_path, "x.img", encode(picture(), pil))
    with pytest.raises(ImageProblem) as exc:
        inspect_image(path)
    assert exc.value.code == "format_mismatch"


def test_format_mismatch_against_the_order():
    png = ImageInfo(format=OutputFormat.PNG, width=1024, height=1024)
    with pytest.raises(ImageProblem) as exc:
        check_image(png, OutputFormat.JPG, AspectRatio.R1_1, Resolution.R1K)
    assert exc.value.code == "format_mismatch"
    check_image(png, OutputFormat.PNG, AspectRatio.R1_1, Resolution.R1K)


@pytest.mark.parametrize("aspect", ASPECT_RATIOS_FIXED)
@pytest.mark.parametrize("resolution", list(Resolution))
def test_size_must_be_the_table_size(aspect, resolution):
    w, h = pixel_size(aspect, resolution)
    check_image(ImageInfo(format=OutputFormat.PNG, width=w, height=h), OutputFormat.PNG, aspect, resolution)
    for bad in ((h, w) if w != h else (w + 1, h), (w, h - 1), (1024, 1024) if (w, h) != (1024, 1024) else (2048, 2048)):
        with pytest.raises(ImageProblem) as exc:
            check_image(
                ImageInfo(format=OutputFormat.PNG, width=bad[0], height=bad[1]), OutputFormat.PNG, aspect, resolution
            )
        assert exc.value.code == "size_mismatch"
        assert f"{bad[0]}x{bad[1]}" in exc.value.message


@pytest.mark.parametrize("resolution", list(Resolution))
def test_auto_accepts_any_table_size_at_the_resolution_only(resolution):
    for aspect in ASPECT_RATIOS_FIXED:
        w, h = pixel_size(aspect, resolution)
        check_image(
            ImageInfo(format=OutputFormat.JPG, width=w, height=h), OutputFormat.JPG, AspectRatio.AUTO, resolution
        )
    other = next(r for r in Resolution if r is not resolution)
    w, h = pixel_size(AspectRatio.R1_1, other)
    for size in ((w, h), (1000, 1000), (1, 1)):
        with pytest.raises(ImageProblem) as exc:
            check_image(
                ImageInfo(format=OutputFormat.PNG, width=size[0], height=size[1]),
                OutputFormat.PNG,
                AspectRatio.AUTO,
                resolution,
            )
        assert exc.value.code == "size_mismatch"


def test_read_lineage_tolerates_a_foreign_comment(tmp_path):
    path = tmp_path / "c.jpg"
    picture(8, 8).save(path, "JPEG", comment=b"not json")
    assert read_lineage(path) is None
