"""Recognising image bytes by their signature (magic bytes), never by a file name or declared type.

Shared by the clients (a reference is checked before it is uploaded) and the sandbox (it checks uploads
the way a files API does), so both sides agree on what an image is.
"""

from __future__ import annotations

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def sniff_image_mime(head: bytes) -> str | None:
    """The MIME type of JPEG, PNG or WebP bytes from their first 12 bytes; None for anything else."""
    for magic, mime in _SIGNATURES:
        if head.startswith(magic):
            return mime
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


EXTENSION_FOR_MIME = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
