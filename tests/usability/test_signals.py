"""An image's perceptual signals: the hash of the reduced image stays within 2 bits of imagehash's phash
of the full one, survives re-encoding and resizing, and flat images read as uniform while the sandbox's
gradients and noise do not."""

from __future__ import annotations

import io

import imagehash
import pytest
from PIL import Image

from nbpro_pipeline.image_files import ImageProblem
from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Resolution, pixel_size
from nbpro_pipeline.sandbox.images import ImageRenderer, RenderSpec, design_key
from nbpro_pipeline.usability import measure_image
from nbpro_pipeline.usability.signals import hash_distance

RENDERER = ImageRenderer()


def sandbox_image(prompt: str, fmt: str = "png", aspect: str = "1:1", resolution: str = "1K") -> bytes:
    w, h = pixel_size(AspectRatio(aspect), Resolution(resolution))
    design = design_key("rivya", prompt, aspect, resolution, fmt)
    return RENDERER.render(RenderSpec(w, h, OutputFormat(fmt), prompt, f"{w}x{h}", design))


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


@pytest.mark.parametrize("prompt", ["a lighthouse at dusk", "a glass of water"])
def test_the_hash_of_the_reduced_image_is_that_of_the_full_one(prompt):
    raw = sandbox_image(prompt)
    full = str(imagehash.phash(Image.open(io.BytesIO(raw))))
    assert hash_distance(measure_image(io.BytesIO(raw)).phash, full) <= 2


def test_a_reencoded_or_resized_copy_keeps_its_signals():
    original = measure_image(io.BytesIO(sandbox_image("a red kite")))
    img = Image.open(io.BytesIO(sandbox_image("a red kite"))).convert("RGB")
    for copy in (encoded(img, "JPEG", quality=60), encoded(img.resize((768, 768)), "PNG")):
        seen = measure_image(io.BytesIO(copy))
        assert hash_distance(seen.phash, original.phash) <= 2
        pairs = zip(bytes.fromhex(seen.colour_grid), bytes.fromhex(original.colour_grid), strict=True)
        assert max(abs(a - b) for a, b in pairs) <= 4


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_flat_images_are_uniform_and_noise_and_gradients_are_not(fmt):
    flat = measure_image(io.BytesIO(encoded(Image.new("RGB", (1024, 1024), (12, 200, 90)), fmt)))
    fast = {"compress_level": 1} if fmt == "PNG" else {}  # the same pixels; zlib's default level took ~1 s here
    noise = measure_image(io.BytesIO(encoded(Image.effect_noise((2048, 2048), 50).convert("RGB"), fmt, **fast)))
    gradient = measure_image(io.BytesIO(sandbox_image("a quiet sky", "jpg" if fmt == "JPEG" else "png")))
    assert flat.uniform_share == 1.0
    assert noise.uniform_share < 0.6 and gradient.uniform_share < 0.5


def test_bytes_that_do_not_decode_are_an_image_problem():
    with pytest.raises(ImageProblem):
        measure_image(io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64))
