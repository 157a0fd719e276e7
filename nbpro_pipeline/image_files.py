"""Checking a downloaded image against what was ordered, and embedding lineage into the file itself.

A provider answering 1024x1024 for a 16:9 request, or a PNG for a JPEG, is a defect to record
(``size_mismatch`` / ``format_mismatch``), not a success. Lineage goes into the file so it survives
copying out of the storage root: the full record as a private blob (a PNG ``tEXt`` chunk, a JPEG
``COM`` segment), then the standard marks of ``nbpro_pipeline.provenance`` (IPTC XMP, a signed C2PA
manifest). Pixels are never decoded and re-encoded: the image is bit-for-bit what the provider sent,
plus metadata blocks.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from PIL import Image
from pydantic import BaseModel

from nbpro_pipeline.models.common import (
    ASPECT_RATIOS_FIXED,
    PIXEL_SIZES,
    AspectRatio,
    OutputFormat,
    Resolution,
    pixel_size,
)
from nbpro_pipeline.provenance import ImageLineage, ProvenanceSigner, StoredLineage
from nbpro_pipeline.provenance.marks import MarkingError, embed_marks

LINEAGE_KEY = "nbpro:lineage"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK = 1 << 20
MAX_JPEG_COMMENT = 65_000
# Decoding is bounded by what the model can return (6336x2688 at 4K 21:9 is the largest) with a margin:
# anything bigger is a wrong or hostile file, refused from its header before a pixel is decoded.
MAX_DECODE_PIXELS = max(w * h for w, h in PIXEL_SIZES.values()) * 3 // 2
DECODABLE = ("PNG", "JPEG", "WEBP")  # the formats we ever show; no other decoder sees hostile bytes


class ImageInfo(BaseModel):
    format: OutputFormat
    width: int
    height: int


class ImageProblem(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@contextmanager
def open_bounded(source: str | Path | BinaryIO, formats: tuple[str, ...] | None = DECODABLE) -> Iterator[Image.Image]:
    """``Image.open`` limited to ``formats`` (None: any, for a header-only look) and ``MAX_DECODE_PIXELS``
    (judged from the header, so a decompression bomb is refused undecoded). Raises ``ImageProblem``."""
    try:
        img = Image.open(source, formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageProblem("corrupt_image", f"refused undecoded: {exc}") from None
    except Exception as exc:  # Pillow raises many types for bad bytes; all mean the same here
        raise ImageProblem("corrupt_image", f"the file does not decode as an image ({exc})") from None
    with img:
        width, height = img.size
        if width * height > MAX_DECODE_PIXELS:
            raise ImageProblem(
                "corrupt_image",
                f"refused undecoded: the file claims {width}x{height} pixels, more than any size the model returns "
                f"(at most {MAX_DECODE_PIXELS} pixels here)",
            )
        yield img


def inspect_image(path: str | Path | BinaryIO) -> ImageInfo:
    """Format and size of a downloaded file (a path or a seekable binary file), after a structural check
    that it is complete.

    PNG: every chunk CRC up to IEND (Pillow's ``verify``); JPEG: the header parses and the stream ends
    with EOI. Both catch truncated and garbled downloads without decoding millions of pixels.
    """
    if not isinstance(path, str | Path):
        return _inspect_file(path)
    with open(path, "rb") as fh:
        return _inspect_file(fh)


def _inspect_file(fh: BinaryIO) -> ImageInfo:
    with open_bounded(fh, formats=None) as img:  # the header only: any format, to name it in format_mismatch
        fmt, size = img.format, img.size
        if fmt == "PNG":
            try:
                img.verify()
            except Exception as exc:  # Pillow raises many types for bad bytes; all mean the same here
                raise ImageProblem(
                    "corrupt_image", f"the downloaded file does not decode as an image ({exc})"
                ) from None
    if fmt == "JPEG":
        fh.seek(-2, 2)
        if fh.read(2) != b"\xff\xd9":
            raise ImageProblem("corrupt_image", "the JPEG stream is truncated (no end-of-image marker)")
    if fmt not in ("PNG", "JPEG"):
        raise ImageProblem("format_mismatch", f"the provider sent a {fmt} image; expected PNG or JPEG")
    return ImageInfo(format=OutputFormat.PNG if fmt == "PNG" else OutputFormat.JPG, width=size[0], height=size[1])


def check_image(info: ImageInfo, output_format: OutputFormat, aspect: AspectRatio, resolution: Resolution) -> None:
    """Raise ``ImageProblem`` when the image is not what was ordered."""
    if info.format is not output_format:
        raise ImageProblem("format_mismatch", f"asked for {output_format.value}, the provider sent {info.format.value}")
    if aspect is AspectRatio.AUTO:  # the model picks the ratio; the size must still be a table size
        allowed = {pixel_size(a, resolution) for a in ASPECT_RATIOS_FIXED}
        if (info.width, info.height) not in allowed:
            raise ImageProblem(
                "size_mismatch",
                f"{info.width}x{info.height} is not a {resolution.value} size of any aspect ratio",
            )
        return
    expected = pixel_size(aspect, resolution)
    if (info.width, info.height) != expected:
        raise ImageProblem(
            "size_mismatch",
            f"{info.width}x{info.height} returned for {aspect.value} at {resolution.value}; "
            f"expected {expected[0]}x{expected[1]}",
        )


def lineage_blob(lineage: StoredLineage) -> bytes:
    record = lineage.model_dump(mode="json")
    return json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def copy_with_lineage(
    src: BinaryIO,
    dst: BinaryIO,
    fmt: OutputFormat,
    lineage: StoredLineage,
    signer: ProvenanceSigner | None = None,
) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` with lineage and the provenance marks; returns (sha256, bytes) of ``dst``.

    Order: the private lineage blob after the header, then IPTC XMP (exiv2), then, with a signer, the
    C2PA manifest, signed last so it covers everything before it. The file is held in memory for
    exiv2 and c2pa (a 4K PNG is ~20 MB). Raises ``ImageProblem`` when the file cannot be marked.
    """
    downloaded = src.read()
    annotated = io.BytesIO()
    _insert_blob(io.BytesIO(downloaded), annotated, fmt, lineage_blob(lineage))
    blobbed = annotated.getvalue()
    del annotated  # one copy fewer held while exiv2 and c2pa make theirs
    try:
        data = embed_marks(blobbed, fmt, ImageLineage.from_engine(lineage), signer, downloaded=downloaded)
    except MarkingError as exc:
        raise ImageProblem("unmarkable_image", str(exc)) from None
    dst.write(data)
    return hashlib.sha256(data).hexdigest(), len(data)


def _insert_blob(src: BinaryIO, dst: BinaryIO, fmt: OutputFormat, blob: bytes) -> None:
    """Copy ``src`` to ``dst`` with ``blob`` as a PNG ``tEXt`` chunk after IHDR or a JPEG comment."""
    if fmt is OutputFormat.PNG:
        head = src.read(8 + 25)  # signature + IHDR (length 13): lineage goes right after IHDR
        if not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
            raise ImageProblem("corrupt_image", "not a PNG with a leading IHDR chunk")
        data = LINEAGE_KEY.encode("latin-1") + b"\x00" + blob
        chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
        dst.write(head + chunk)
    else:
        head = src.read(2)
        if head != b"\xff\xd8":
            raise ImageProblem("corrupt_image", "not a JPEG (no start-of-image marker)")
        blob = blob[:MAX_JPEG_COMMENT]
        dst.write(head + b"\xff\xfe" + struct.pack(">H", len(blob) + 2) + blob)
    while chunk_bytes := src.read(_CHUNK):
        dst.write(chunk_bytes)


def read_lineage(path: str | Path | BinaryIO) -> StoredLineage | None:
    """The lineage embedded by ``copy_with_lineage``, or None (none, or not ours)."""
    with Image.open(path) as img:
        raw = img.info.get(LINEAGE_KEY) if img.format == "PNG" else img.info.get("comment")
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    raw = raw.rstrip("\x00")  # exiv2 rewrites a JPEG comment NUL-terminated when it adds XMP
    try:
        return StoredLineage.model_validate_json(raw)
    except ValueError:  # pydantic's ValidationError is one: a foreign comment, or not a record
        return None


THUMBNAIL_SIDE = 192  # the stored thumbnail's longer side: the gallery's tile, from which smaller ones are made


def thumbnail_jpeg(rgb: Image.Image) -> bytes:
    """The stored thumbnail of an image already decoded (and reduced) in RGB: a JPEG within
    ``THUMBNAIL_SIDE``, so that pages and contact sheets never decode the full image again."""
    scale = THUMBNAIL_SIDE / max(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))) if scale < 1 else rgb.size
    buf = io.BytesIO()
    rgb.resize(size, Image.Resampling.BOX).save(buf, "JPEG", quality=80)  # BOX: area means, the cheapest
    return buf.getvalue()


def thumbnail_data_uri(path: str | Path | BinaryIO, size: int = 64, quality: int = 55) -> str:
    """A tiny JPEG as a data URI: contact sheets live in the event log, so each stays ~1-2 KB. Decoding
    is bounded (``open_bounded``) and reduced where the format allows (JPEG decodes at 1/2..1/8 scale);
    raises ``ImageProblem`` for a file that cannot or may not be decoded."""
    import base64

    with open_bounded(path) as img:
        try:
            img.draft("RGB", (size, size))  # JPEG only: the decoder skips what the thumbnail would drop
            img.thumbnail((size, size), reducing_gap=2.0)
            buf = io.BytesIO()
            img.convert("RGB").save(buf, "JPEG", quality=quality)
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or garbled pixel data
            raise ImageProblem("corrupt_image", f"the file does not decode as an image ({exc})") from None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
