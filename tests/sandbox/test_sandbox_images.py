"""Images decoded from real downloads: exact pixel sizes for all 30 (ratio, resolution) pairs on both
providers, formats, and byte-for-byte determinism."""

from __future__ import annotations

import hashlib
import io
import time
import zlib

import pytest
from PIL import Image

from nbpro_pipeline.media import sniff_image_mime as sniff_image
from nbpro_pipeline.models.common import PIXEL_SIZES, OutputFormat
from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer
from nbpro_pipeline.sandbox.faults import corrupt_bytes
from nbpro_pipeline.sandbox.images import ImageRenderer, RenderSpec, adler32_combine, design_key
from tests.sandbox.conftest import OdiWire, RivyaWire, decode, wire_client

PAIRS = sorted(PIXEL_SIZES, key=lambda p: (p[1].value, p[0].value))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server for the 60 size checks: starting one per case would dominate the runtime."""
    with (
        SandboxServer(tmp_path_factory.mktemp("images"), SandboxConfig.zero_latency()) as server,
        wire_client(server.base_url, headers={"Authorization": "Bearer rvya_sk_img"}) as r,
        wire_client(server.odirouter_url, headers={"Authorization": "Bearer odr_img"}) as o,
    ):
        yield RivyaWire(r), OdiWire(o)


@pytest.mark.parametrize(("aspect", "resolution"), PAIRS, ids=[f"{a.value}-{r.value}" for a, r in PAIRS])
def test_every_size_on_both_providers(shared, aspect, resolution):
    rivya, odi = shared
    expected = PIXEL_SIZES[(aspect, resolution)]
    task = rivya.generate(
        f"size {aspect.value} {resolution.value}", aspect_ratio=aspect.value, resolution=resolution.value
    )
    png = rivya.http.get(task["result"]["primary_url"]).content
    image = decode(png)
    assert (image.format, image.size) == ("PNG", expected)
    result = odi.generate(prompt=f"size {aspect.value}", aspect_ratio=aspect.value, resolution=resolution.value)
    meta = next(o for o in result["outputs"] if o["type"] == "image")
    image = decode(odi.http.get(meta["url"]).content)
    assert (image.format, image.size) == ("PNG", expected) == ("PNG", (meta["width"], meta["height"]))


@pytest.mark.parametrize(("aspect", "resolution"), [("1:1", "1K"), ("3:4", "2K")])
def test_jpg_output(shared, aspect, resolution):
    rivya, _ = shared
    task = rivya.generate("a jpeg", aspect_ratio=aspect, resolution=resolution, output_format="jpg")
    url = task["result"]["primary_url"]
    assert url.split("?")[0].endswith("/0.jpg")
    response = rivya.http.get(url)
    assert response.headers["content-type"] == "image/jpeg"
    image = decode(response.content)
    assert image.format == "JPEG" and image.mode == "RGB"
    assert image.size == PIXEL_SIZES[(aspect, resolution)]  # type: ignore[index]


def test_same_body_gives_the_same_bytes_and_different_prompts_differ(shared):
    rivya, odi = shared

    def fetch(prompt: str) -> bytes:
        task = rivya.generate(prompt, aspect_ratio="4:5")
        return rivya.http.get(task["result"]["primary_url"]).content

    first, second, other = fetch("determinism"), fetch("determinism"), fetch("determinism!")
    assert first == second and first != other

    def fetch_odi(prompt: str) -> bytes:
        result = odi.generate(prompt=prompt, aspect_ratio="4:5")
        return odi.http.get(next(o["url"] for o in result["outputs"] if o["type"] == "image")).content

    assert fetch_odi("determinism") == fetch_odi("determinism")


def test_same_seed_and_body_give_the_same_bytes_on_another_server(tmp_path, shared):
    rivya, _ = shared
    reference = rivya.http.get(rivya.generate("cross-server", resolution="2K")["result"]["primary_url"]).content
    with (
        SandboxServer(tmp_path / "other", SandboxConfig.zero_latency()) as other,
        wire_client(other.base_url, headers={"Authorization": "Bearer rvya_sk_x"}) as client,
    ):
        again = client.get(RivyaWire(client).generate("cross-server", resolution="2K")["result"]["primary_url"]).content
    assert hashlib.sha256(again).digest() == hashlib.sha256(reference).digest()


def test_downloads_are_cached_and_repeatable(shared):
    rivya, _ = shared
    url = rivya.generate("cache me", resolution="4K")["result"]["primary_url"]
    assert rivya.http.get(url).content == rivya.http.get(url).content


def test_result_path_needs_matching_extension_and_a_finished_task(shared):
    rivya, _ = shared
    url = rivya.generate("ext")["result"]["primary_url"]
    assert rivya.http.get(url.replace("/0.png", "/0.jpg")).status_code == 403  # signature covers the path


def test_signature_and_expiry_are_checked(shared):
    rivya, _ = shared
    url = rivya.generate("signed")["result"]["primary_url"]
    base, query = url.split("?")
    params = dict(p.split("=") for p in query.split("&"))
    tampered = f"{base}?exp={params['exp']}&sig={'0' * 32}"
    for bad in (base, tampered, f"{base}?exp={int(params['exp']) + 1}&sig={params['sig']}"):
        response = rivya.http.get(bad)
        assert response.status_code == 403 and response.text == "Signature does not match"
    assert rivya.http.get(url).status_code == 200


def test_short_ttl_expires_urls(sandbox, rivya, http):
    sandbox.set_config({"result_url_ttl_s": 0.2})
    url = rivya.generate("short-lived")["result"]["primary_url"]
    assert http.get(url).status_code == 200  # exp is rounded up to the next whole second
    time.sleep(1.25)
    expired = http.get(url)
    assert expired.status_code == 403 and expired.text == "Request has expired"
    assert http.get(rivya.get(url.split("/")[-2]).json()["result"]["primary_url"]).status_code == 200


# --- the renderer itself ------------------------------------------------------------------------


def test_adler32_combine_matches_zlib():
    import random

    rng = random.Random(7)
    for _ in range(300):
        a, b = rng.randbytes(rng.randint(0, 3000)), rng.randbytes(rng.randint(0, 70000))
        assert adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


def test_hand_assembled_png_is_valid_for_pillow_and_zlib():
    renderer = ImageRenderer(cache_bytes=0)
    png = renderer.render(RenderSpec(1264, 848, OutputFormat.PNG, "p " * 400, "caption", design_key("x")))
    image = Image.open(io.BytesIO(png))
    image.verify()  # chunk CRCs
    image = decode(png)
    assert image.mode == "P" and image.size == (1264, 848)
    assert len(image.getcolors(256) or []) > 5  # gradient, shapes, panel and text: not a blank canvas


@pytest.mark.parametrize("fmt", [OutputFormat.PNG, OutputFormat.JPG])
def test_corruption_never_decodes(fmt):
    renderer = ImageRenderer(cache_bytes=0)
    data = renderer.render(RenderSpec(768, 1376, fmt, "corrupt me", "c", design_key("c", fmt.value)))
    for i in range(40):
        damaged = corrupt_bytes(data, i / 40)
        assert damaged != data and sniff_image(damaged) == sniff_image(data)
        with pytest.raises((OSError, SyntaxError, ValueError)):
            decode(damaged)


def test_sniff_image_uses_magic_bytes_only():
    assert sniff_image(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_image(b"\x89PNG\r\n\x1a\nrest") == "image/png"
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    assert sniff_image(b"MZ\x90\x00") is None
