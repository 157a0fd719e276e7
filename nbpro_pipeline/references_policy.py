"""What a reference image may be, in one place: validation (``prompts.references``) and the upload stage
(``engine.references``) both call these, so the engine never trusts that validation ran, and the two
can never disagree on a scheme, a root, the size limit or what counts as an image.

* **URLs**: only ``http://`` and ``https://`` (any case) with a host. ``file:``, ``ftp:``, ``s3:``,
  ``data:``, ``javascript:``... are refused: Rivya takes references only through its Files API and
  OdiRouter only fetches http(s) URLs, so no other scheme could ever reach a provider; ``data:`` URIs
  would also put whole images into table cells (a local file under a root does the same job), and a
  ``file://`` URI is just a local path spelled another way (write the path).
* **Local files** must lie under the allowed roots, judged on the real path (symlinks and ``..``
  resolved) *before* the file is opened. The allowed roots are the configured reference roots; when
  none are configured, the folder of the table that names the file (a table can use the images next
  to it, never ``/home/...`` or ``/etc/...``), and none for a remote table (an ``s3://`` table cannot
  make the pipeline upload files of the machine that runs it).
* **Content**: a regular file (not a FIFO or a device, which could block or never end), at most
  ``MAX_REFERENCE_BYTES`` (Rivya's 30 MB), JPEG, PNG or WebP by its first bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from nbpro_pipeline.media import sniff_image_mime
from nbpro_pipeline.models.common import RIVYA_MAX_FILE_BYTES

MAX_REFERENCE_BYTES = RIVYA_MAX_FILE_BYTES
_MB = 1024 * 1024
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


class ReferenceRefused(Exception):
    """A reference the pipeline will not use; ``code`` is one of the validation's reference codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def is_http_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def check_scheme(value: str) -> bool:
    """True for an http(s) URL, False for a local path; raises for every other scheme or a URL without host."""
    if is_http_url(value):
        if not urlsplit(value).netloc:
            raise ReferenceRefused("reference_url_invalid", "has no host; write a full URL like https://host/image.png")
        return True
    scheme = _SCHEME.match(value)
    if scheme and not _WINDOWS_DRIVE.match(value):
        name = scheme.group(1).lower()
        hint = "write the path without 'file://'" if name == "file" else "host it at one"
        raise ReferenceRefused(
            "reference_url_scheme",
            f"{name}: references are not supported; use an http(s) URL or a local file path ({hint})",
        )
    return False


def table_folder(source_uri: str) -> str | None:
    """The folder of a local table (an absolute path or a ``file://`` URI); None for a remote one."""
    if source_uri.lower().startswith("file://"):
        source_uri = unquote(urlsplit(source_uri).path)
    return os.path.dirname(source_uri) if os.path.isabs(source_uri) else None


def real_roots(roots: Sequence[str]) -> tuple[str, ...]:
    return tuple(os.path.realpath(os.path.expanduser(r)) for r in roots)


def allowed_roots(configured: Sequence[str] | None, source_uri: str) -> tuple[str, ...]:
    """The configured roots, else the folder of the table the reference comes from (none if remote)."""
    if configured is not None:
        return real_roots(configured)
    folder = table_folder(source_uri)
    return real_roots([folder]) if folder else ()


def confine(path: str, roots: Sequence[str]) -> str:
    """The real path of ``path`` if it lies under one of ``roots`` (already real paths), else refuse."""
    real = os.path.realpath(path)
    if not any(_within(real, root) for root in roots):
        where = ", ".join(roots) if roots else "none: the table is not local and no reference root is configured"
        raise ReferenceRefused(
            "reference_outside_roots",
            f"{real} is outside the allowed reference roots ({where}); move the image under one of them or add "
            "its folder as a reference root (--reference-root, or reference_roots of the pipeline resource)",
        )
    return real


def check_size(size: int, what: str) -> None:
    if size > MAX_REFERENCE_BYTES:
        raise ReferenceRefused(
            "reference_too_large",
            f"{what} has {size / _MB:.1f} MB; a reference image may have at most {MAX_REFERENCE_BYTES // _MB} MB; "
            "shrink or recompress it",
        )


def check_image(head: bytes, what: str) -> str:
    mime = sniff_image_mime(head[:12])
    if mime is None:
        raise ReferenceRefused(
            "reference_not_image",
            f"{what} is not a JPEG, PNG or WebP image (judged by its first bytes); export it in one of those formats",
        )
    return mime


def read_local(path: str, roots: Sequence[str], *, keep: bool) -> tuple[str, bytes | None]:
    """(sha256 hex, the bytes if ``keep``) of a local reference, after every check above; never reads
    more than the size limit, never opens a file outside the roots."""
    real = confine(path, roots)
    try:
        st = os.stat(real)
        if not os.path.isfile(real):
            raise ReferenceRefused("reference_unreadable", f"{path} is not a file; name an image file")
        check_size(st.st_size, path)
        digest = hashlib.sha256()
        kept: list[bytes] = []
        size = 0
        with open(real, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                if size == 0:
                    check_image(block, path)
                size += len(block)
                check_size(size, path)  # the file grew since stat
                digest.update(block)
                if keep:
                    kept.append(block)
        if size == 0:
            check_image(b"", path)
    except FileNotFoundError:
        raise ReferenceRefused("reference_unreadable", f"no file at {path}; check the path") from None
    except OSError as exc:
        raise ReferenceRefused(
            "reference_unreadable", f"cannot read {path} ({exc.strerror or exc}); make it readable"
        ) from None
    return digest.hexdigest(), b"".join(kept) if keep else None


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False
