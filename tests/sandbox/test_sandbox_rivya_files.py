"""Rivya Files API: MIME by magic bytes only, size limits, metadata, and references in generations."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from nbpro_pipeline.models import pixel_size
from nbpro_pipeline.providers.rivya.wire import RivyaFile
from tests.sandbox.conftest import assert_error, decode

MB = 1024 * 1024


def image_bytes(size: tuple[int, int], fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buf, fmt)
    return buf.getvalue()


def upload(rivya, data: bytes, name: str = "ref.png", content_type: str = "image/png", **fields):
    form = {"kind": "image", **fields}
    return rivya.http.post("/api/v1/files", files={"file": (name, data, content_type)}, data=form)


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_upload_answers_metadata_and_serves_the_bytes(rivya, http, fmt, mime):
    data = image_bytes((640, 480), fmt)
    response = upload(rivya, data, name="my photo.img", model="nano-banana-pro", client_request_id="up-1")
    assert response.status_code == 200, response.text
    meta = RivyaFile.model_validate(response.json())
    assert re.fullmatch(r"file_[0-9a-f]{24}", meta.id)
    assert (meta.kind, meta.name, meta.mimeType, meta.size) == ("image", "my photo.img", mime, len(data))
    fetched = http.get(meta.url)  # the file URL needs no key
    assert fetched.status_code == 200 and fetched.content == data and fetched.headers["content-type"] == mime
    again = rivya.http.get(f"/api/v1/files/{meta.id}")
    assert again.status_code == 200 and again.json() == response.json()


def test_jpeg_named_png_is_stored_as_jpeg(rivya):
    response = upload(rivya, image_bytes((300, 200), "JPEG"), name="photo.png", content_type="image/png")
    assert response.status_code == 200 and response.json()["mimeType"] == "image/jpeg"


@pytest.mark.parametrize(
    "payload",
    [
        b"\x7fELF\x02\x01\x01" + b"\x00" * 200,  # a Linux executable
        b"MZ\x90\x00\x03" + b"\x00" * 200,  # a Windows executable
        b"GIF89a" + b"\x00" * 200,  # an image, but not an accepted type
        b"plain text pretending to be a picture",
    ],
)
def test_non_images_named_png_are_rejected(rivya, payload):
    message = assert_error(upload(rivya, payload, name="evil.png"), 400, "validation_failed")
    assert "magic bytes" in message


def test_right_magic_but_broken_image_is_rejected(rivya):
    assert_error(upload(rivya, b"\x89PNG\r\n\x1a\n" + b"\x00" * 64), 400, "validation_failed")


def test_size_limit_is_30_mb_for_nano_banana_pro_and_10_mb_otherwise(rivya):
    # A valid PNG header followed by padding: the size check must come before any decoding.
    head = image_bytes((16, 16), "PNG")
    eleven_mb = head + b"\x00" * (11 * MB - len(head))
    message = assert_error(upload(rivya, eleven_mb), 400, "validation_failed")
    assert "10 MB" in message
    assert upload(rivya, eleven_mb, model="nano-banana-pro").status_code == 200
    over = head + b"\x00" * (30 * MB + 1 - len(head))
    message = assert_error(upload(rivya, over, model="nano-banana-pro"), 400, "validation_failed")
    assert "30 MB" in message


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"kind": "video"}, "image references only"),
        ({"kind": "audio"}, "image references only"),
        ({"kind": "document"}, "image, video or audio"),
        ({"model": "flux-dev"}, "Unknown model"),
        ({"client_request_id": "x" * 129}, "128"),
    ],
)
def test_bad_form_fields_are_400(rivya, fields, fragment):
    message = assert_error(upload(rivya, image_bytes((8, 8), "PNG"), **fields), 400, "validation_failed")
    assert fragment in message


def test_missing_file_or_not_multipart_is_400(rivya):
    assert_error(rivya.http.post("/api/v1/files", data={"kind": "image"}), 400, "validation_failed")
    assert_error(rivya.http.post("/api/v1/files", json={"kind": "image"}), 400, "validation_failed")


def test_unknown_file_is_404(rivya, http):
    assert_error(rivya.http.get("/api/v1/files/file_0123456789abcdef01234567"), 404, "not_found")
    assert http.get("/cdn/rivya/files/file_0123456789abcdef01234567/x.png").status_code == 404


def test_files_api_needs_a_key(http):
    assert_error(http.post("/api/v1/files", files={"file": ("a.png", b"x")}), 401, "api_key_missing")


@pytest.mark.parametrize(
    ("reference_size", "expected_ratio"),
    [((1920, 1080), "16:9"), ((1000, 1500), "2:3"), ((2100, 900), "21:9"), ((800, 800), "1:1")],
)
def test_auto_aspect_follows_the_first_reference(rivya, http, reference_size, expected_ratio):
    first = upload(rivya, image_bytes(reference_size, "JPEG"), name="first.jpg").json()
    second = upload(rivya, image_bytes((300, 1000), "PNG")).json()
    items = [{"url": first["url"], "kind": "image"}, {"url": second["url"], "kind": "image"}]
    task = rivya.generate("in this style", aspect_ratio="auto", referenceMediaItems=items)
    assert task["status"] == "succeeded"
    assert decode(http.get(task["result"]["primary_url"]).content).size == pixel_size(expected_ratio, "1K")


def test_auto_without_references_is_square(rivya, http):
    task = rivya.generate("no refs", aspect_ratio="auto", resolution="2K")
    assert decode(http.get(task["result"]["primary_url"]).content).size == (2048, 2048)


def test_huge_upload_is_refused_from_its_content_length(rivya):
    head = image_bytes((16, 16), "PNG")
    huge = head + b"\x00" * (40 * MB)
    message = assert_error(upload(rivya, huge, model="nano-banana-pro"), 400, "validation_failed")
    assert "at most 30 MB" in message
