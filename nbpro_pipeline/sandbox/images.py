"""Deterministic stand-in images at Gemini 3 Pro Image's exact pixel sizes, rendered fast.

Each image is a vertical colour gradient with a few shapes and a caption panel carrying the prompt.
Speed matters (benchmarks download hundreds of images a second on two cores), and PNG encoding, not
drawing, is the cost: Pillow needs ~2 ms to deflate one 1024x1024 palette image. So the renderer
writes the PNG itself:

* Everything but the caption panel depends only on (size, layout variant): those rows are deflated
  once per template and cached as byte-aligned raw-deflate segments (``Z_FULL_FLUSH``).
* Per image, only the panel rows (about a fifth of the height) are drawn and deflated; the IDAT
  stream is prefix + panel + suffix segments, and the zlib Adler-32 of the whole is combined
  arithmetically from the parts (``adler32_combine``), so the cached rows are never touched again.
* Per-prompt colour lives in the palette (PLTE), so images of the same size still look different.
* Template rows are one pixel wider than the image, column 0 held at index 0: that column *is* the
  PNG filter byte ("None") of each scanline, so ``tobytes()`` is already the filtered stream.

JPEG output goes through Pillow (decode our PNG, convert to RGB, encode); it is the rare path.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
import struct
import textwrap
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from nbpro_pipeline.models.common import OutputFormat

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, "fastest" level hint; (0x7801 % 31 == 0)
_ADLER_BASE = 65521
_GRADIENT_STEPS = 192  # palette 0..191: background gradient
_SHAPE_INDEX = 192  # 192..195: shapes
_PANEL_INDEX = 200
_TEXT_INDEX = 201
_CAPTION_INDEX = 202
_LAYOUT_VARIANTS = 4
_SOFTWARE_CHUNK = b"Software\x00nbpro-pipeline sandbox"


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """What an image shows; equal specs give byte-identical images."""

    width: int
    height: int
    fmt: OutputFormat
    title: str  # the prompt, wrapped onto the panel
    caption: str  # one line under it (provider, ratio, resolution, size)
    design: bytes  # >= 16 bytes of hash choosing colours and layout
    flat: bool = False  # one colour all over (the blank_image fault), chosen by ``design``

    @property
    def pixels(self) -> int:
        return self.width * self.height


def design_key(*parts: str) -> bytes:
    """The hash that picks an image's colours and layout from what determines it (prompt, params)."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()


def adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    """Adler-32 of A+B from adler(A), adler(B) and len(B) (zlib's adler32_combine, which Python lacks)."""
    rem = len2 % _ADLER_BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _ADLER_BASE
    sum1 += (adler2 & 0xFFFF) + _ADLER_BASE - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + _ADLER_BASE - rem
    sum1 %= _ADLER_BASE
    sum2 %= _ADLER_BASE
    return sum1 | (sum2 << 16)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


@dataclass(frozen=True, slots=True)
class _Template:
    """The cached, prompt-independent part of one (size, layout) image."""

    width: int
    height: int
    band_top: int
    band_height: int
    panel_left: int  # x of the panel's inner text start, in image coordinates
    panel_width: int
    font_size: int
    line_height: int
    band_rows: bytes  # filtered scanlines of the panel band, to draw the text onto
    prefix_z: bytes  # raw deflate of the rows above the band, ending byte-aligned (full flush)
    suffix_z: bytes  # raw deflate of the rows below, ending the stream
    prefix_adler: int
    suffix_adler: int
    suffix_len: int

    @property
    def nbytes(self) -> int:
        return len(self.band_rows) + len(self.prefix_z) + len(self.suffix_z)


def _deflate(data: bytes, final: bool) -> bytes:
    z = zlib.compressobj(1, zlib.DEFLATED, -15, 8, zlib.Z_RLE)
    return z.compress(data) + z.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)


class _BytesLru:
    """An LRU bounded by total bytes, safe across threads (renders of large images run in a pool)."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._items: OrderedDict[object, tuple[object, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: object) -> object | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: object, value: object, nbytes: int) -> None:
        if nbytes > self.capacity_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._items[key] = (value, nbytes)
            self._size += nbytes
            while self._size > self.capacity_bytes and self._items:
                _, (_, evicted) = self._items.popitem(last=False)
                self._size -= evicted

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._items), "bytes": self._size, "hits": self.hits, "misses": self.misses}


class _GlyphCache:
    """Pre-rasterised glyph masks of one font size.

    FreeType costs ~10 us per glyph per call and Pillow keeps no glyph cache, so drawing text with
    ``ImageDraw.text`` dominated a 1K render; pasting cached 1-bit masks is ~4x cheaper. Kerning is
    lost, which nobody will miss on a stand-in image. Masks are 1-bit because blending palette
    *indices* (anti-aliasing) would produce unrelated colours.
    """

    def __init__(self, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> None:
        self._font = font
        self._glyphs: dict[str, tuple[Image.Image | None, int, int, float]] = {}
        self._lock = threading.Lock()  # FreeType faces must not be used from two threads at once

    def _glyph(self, ch: str) -> tuple[Image.Image | None, int, int, float]:
        glyph = self._glyphs.get(ch)
        if glyph is None:
            with self._lock:
                left, top, right, bottom = self._font.getbbox(ch)
                mask = None
                if right > left and bottom > top:
                    mask = Image.new("1", (right - left, bottom - top))
                    ImageDraw.Draw(mask).text((-left, -top), ch, fill=255, font=self._font)
                glyph = (mask, left, top, self._font.getlength(ch))
                self._glyphs[ch] = glyph
        return glyph

    def draw(self, image: Image.Image, x: float, y: int, text: str, index: int, right: int) -> None:
        for ch in text:
            mask, left, top, advance = self._glyph(ch)
            if x + advance > right:
                break
            if mask is not None:
                image.paste(index, (int(x) + left, y + top), mask)
            x += advance


# Templates and glyph masks depend on nothing but their key (size and layout; font size): one cache per
# process, so a sandbox started after another (a test run starts hundreds) draws none of them again.
_TEMPLATES = _BytesLru(96 * 1024 * 1024)
_GLYPH_CACHES: dict[int, _GlyphCache] = {}


class ImageRenderer:
    """Renders ``RenderSpec``s to PNG/JPEG bytes; keeps recent images in an LRU of its own, and shares
    the process's templates and glyph masks."""

    def __init__(self, cache_bytes: int = 256 * 1024 * 1024):
        self.images = _BytesLru(cache_bytes)
        self._templates = _TEMPLATES
        self._glyph_caches = _GLYPH_CACHES

    def cached(self, spec: RenderSpec) -> bytes | None:
        return self.images.get(spec)  # type: ignore[return-value]

    def render(self, spec: RenderSpec) -> bytes:
        hit = self.images.get(spec)
        if hit is not None:
            return hit  # type: ignore[return-value]
        data = _flat_png(spec) if spec.flat else self._render_png(spec)
        if spec.fmt is OutputFormat.JPG:
            data = _png_to_jpeg(data)
        self.images.put(spec, data, len(data))
        return data

    def clear(self) -> None:
        self.images.clear()

    # --- PNG assembly -------------------------------------------------------------------------

    def _render_png(self, spec: RenderSpec) -> bytes:
        tpl = self._template(spec.width, spec.height, spec.design[0] % _LAYOUT_VARIANTS)
        band_rows = self._draw_band(tpl, spec)
        band_z = _deflate(band_rows, final=False)
        adler = adler32_combine(zlib.adler32(band_rows, tpl.prefix_adler), tpl.suffix_adler, tpl.suffix_len)
        idat = b"".join((_ZLIB_HEADER, tpl.prefix_z, band_z, tpl.suffix_z, struct.pack(">I", adler)))
        ihdr = struct.pack(">IIBBBBB", spec.width, spec.height, 8, 3, 0, 0, 0)
        return b"".join(
            (
                _PNG_SIGNATURE,
                _chunk(b"IHDR", ihdr),
                _chunk(b"PLTE", _palette(spec.design)),
                _chunk(b"tEXt", _SOFTWARE_CHUNK),
                _chunk(b"IDAT", idat),
                _chunk(b"IEND", b""),
            )
        )

    def _draw_band(self, tpl: _Template, spec: RenderSpec) -> bytes:
        stride = tpl.width + 1
        band = Image.frombytes("P", (stride, tpl.band_height), tpl.band_rows)
        chars_per_line = max(8, int(tpl.panel_width / (tpl.font_size * 0.5)))
        lines = textwrap.wrap(" ".join(spec.title.split()), chars_per_line, max_lines=3, placeholder=" ...")
        glyphs = self._glyphs(tpl.font_size)
        pad = tpl.line_height // 3
        right = tpl.panel_left + tpl.panel_width
        for i, line in enumerate(lines[:3]):
            glyphs.draw(band, tpl.panel_left, pad + i * tpl.line_height, line, _TEXT_INDEX, right)
        glyphs.draw(band, tpl.panel_left, pad + 3 * tpl.line_height, spec.caption, _CAPTION_INDEX, right)
        band.paste(0, (0, 0, 1, tpl.band_height))  # column 0 is the scanline filter byte: keep it 0
        return band.tobytes()

    def _glyphs(self, size: int) -> _GlyphCache:
        glyphs = self._glyph_caches.get(size)
        if glyphs is None:
            glyphs = self._glyph_caches.setdefault(size, _GlyphCache(ImageFont.load_default(size=size)))
        return glyphs

    def _template(self, width: int, height: int, variant: int) -> _Template:
        key = (width, height, variant)
        tpl = self._templates.get(key)
        if tpl is None:
            tpl = _build_template(width, height, variant)
            self._templates.put(key, tpl, tpl.nbytes)
        return tpl  # type: ignore[return-value]


def _build_template(width: int, height: int, variant: int) -> _Template:
    stride = width + 1
    short = min(width, height)
    font_size = max(10, short // 30)
    line_height = int(font_size * 1.3)
    band_height = line_height * 4 + line_height // 3 * 2
    margin = max(4, short // 24)
    band_top = height - band_height - margin if variant % 2 == 0 else margin
    # Gradient background: one palette index per row, a filter byte (0) in front of each.
    row_of = [b"\x00" + bytes((k,)) * width for k in range(_GRADIENT_STEPS)]
    raw = b"".join(row_of[y * (_GRADIENT_STEPS - 1) // max(1, height - 1)] for y in range(height))
    image = Image.frombytes("P", (stride, height), raw)
    draw = ImageDraw.Draw(image)
    rng = random.Random(f"{width}x{height}/{variant}")
    for i in range(4):
        radius = int(short * rng.uniform(0.08, 0.22))
        cx, cy = 1 + int(width * rng.uniform(0.1, 0.9)), int(height * rng.uniform(0.1, 0.9))
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if i == 3:
            draw.rounded_rectangle(box, radius=radius // 4, fill=_SHAPE_INDEX + i)
        else:
            draw.ellipse(box, fill=_SHAPE_INDEX + i)
    panel_left = 1 + margin
    draw.rounded_rectangle(
        (panel_left, band_top, width - margin, band_top + band_height - 1),
        radius=max(2, line_height // 3),
        fill=_PANEL_INDEX,
    )
    image.paste(0, (0, 0, 1, height))
    rows = image.tobytes()
    top, bottom = band_top * stride, (band_top + band_height) * stride
    prefix, band_rows, suffix = rows[:top], rows[top:bottom], rows[bottom:]
    return _Template(
        width=width,
        height=height,
        band_top=band_top,
        band_height=band_height,
        panel_left=panel_left + line_height // 2,
        panel_width=width - 2 * margin - line_height,
        font_size=font_size,
        line_height=line_height,
        band_rows=band_rows,
        prefix_z=_deflate(prefix, final=False),
        suffix_z=_deflate(suffix, final=True),
        prefix_adler=zlib.adler32(prefix),
        suffix_adler=zlib.adler32(suffix),
        suffix_len=len(suffix),
    )


def _palette(design: bytes) -> bytes:
    """256 RGB entries: a two-colour gradient, four shape colours, a dark panel and light text."""

    def colour(hue_byte: int, sat: float, val: float) -> tuple[int, int, int]:
        r, g, b = colorsys.hsv_to_rgb(hue_byte / 255.0, sat, val)
        return int(r * 255), int(g * 255), int(b * 255)

    top = colour(design[1], 0.45 + design[2] / 600, 0.95)
    bottom = colour(design[3], 0.55 + design[4] / 600, 0.55 + design[5] / 1000)
    out = bytearray(768)
    last = _GRADIENT_STEPS - 1
    for c in range(3):
        a, b = top[c], bottom[c]
        out[c : 3 * _GRADIENT_STEPS : 3] = bytes([(a * (last - k) + b * k) // last for k in range(_GRADIENT_STEPS)])
    for i in range(4):
        at = 3 * (_SHAPE_INDEX + i)
        out[at : at + 3] = bytes(colour(design[6 + i], 0.6 + design[10 + i] / 1000, 0.85))
    out[3 * _PANEL_INDEX : 3 * _PANEL_INDEX + 3] = bytes((20, 20, 28))
    out[3 * _TEXT_INDEX : 3 * _TEXT_INDEX + 3] = bytes((250, 250, 250))
    out[3 * _CAPTION_INDEX : 3 * _CAPTION_INDEX + 3] = bytes((190, 200, 215))
    return bytes(out)


def _flat_png(spec: RenderSpec) -> bytes:
    colour = tuple(spec.design[:3])
    out = io.BytesIO()
    Image.new("RGB", (spec.width, spec.height), colour).save(out, "PNG", compress_level=1)
    return out.getvalue()


def _png_to_jpeg(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=85)
    return out.getvalue()


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header, without decoding pixels; None if Pillow cannot parse it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # Pillow raises many types for malformed input; all mean "not an image"
        return None
