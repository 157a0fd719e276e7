"""What a reference image may be, in one place: validation (``prompts.references``) and the upload stage
(``engine.references``) both call these, so the engine never trusts that validation ran, and the two
can never disagree on a scheme, a root, the size limit or what counts as an image.

* **URLs**: ``http://`` and ``https://`` (any case) with a host and no ``user:pass@``, kept as written
  (written down only through ``redaction.redact_url``); fetched only from public addresses, unless the
  operator allows more (``network_policy``).
* **Object-store files** (``s3://``, ``gs://``, ``az://``...) are read with the environment's credentials
  and uploaded like local files where a provider takes uploads (one fetching URLs takes only those). A
  relative path in a table read from a bucket resolves against the table's own prefix, so a bucket holds
  tables and their ``refs/`` like a folder does.
* Every other scheme (``file:``, ``ftp:``, ``data:``, ``javascript:``...) is refused: no provider could
  ever receive it; ``data:`` URIs would put whole images into table cells (a file under a root does the
  same job), and a ``file://`` URI is just a local path spelled another way (write the path).
* **Files** must lie under the allowed roots, judged *before* the file is opened: on the real path
  (symlinks and ``..`` resolved) for local files, on the normalized URI for objects. The allowed roots
  are the configured reference roots (paths or URIs); when none are configured, the folder or prefix
  of the table that names the file. A table can use the images next to it, never ``/home/...`` or
  ``/etc/...``, and an ``s3://`` table cannot make the pipeline upload files of the machine that runs it.
* **Content**: a regular file (not a FIFO or a device, which could block or never end), at most
  ``MAX_REFERENCE_BYTES`` (the most any registered provider accepts), JPEG, PNG or WebP by its first bytes.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Sequence
from typing import Literal
from urllib.parse import unquote, urlsplit

from nbpro_pipeline.media import sniff_image_mime
from nbpro_pipeline.providers.registry import PROVIDERS
from nbpro_pipeline.redaction import has_userinfo

MAX_REFERENCE_BYTES = max(entry.traits.limits.max_reference_bytes for entry in PROVIDERS)
_MB = 1024 * 1024
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
Kind = Literal["url", "object", "local"]


class ReferenceRefused(Exception):
    """A reference the pipeline will not use; ``code`` is one of the validation's reference codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def is_http_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def is_object_uri(value: str) -> bool:
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.lower() in OBJECT_STORE_SCHEMES


def normalize_uri(uri: str) -> str:
    """``s3://b/x/../y`` -> ``s3://b/y``: roots and references compare on one spelling."""
    scheme, _, rest = uri.partition("://")
    return f"{scheme.lower()}://{posixpath.normpath(rest)}"


def join_uri(base: str, relative: str) -> str | None:
    """``relative`` under the prefix ``base`` (``s3://bucket/dir``); None if it climbs out of the bucket."""
    scheme, _, rest = base.partition("://")
    bucket = rest.split("/", 1)[0]
    joined = posixpath.normpath(f"{rest}/{relative}")
    return f"{scheme.lower()}://{joined}" if joined.startswith(bucket + "/") else None


def reference_kind(value: str) -> Kind:
    """``url`` (http(s)), ``object`` (an object-store URI) or ``local`` (a path); raises for every other
    scheme and for a URL without host."""
    if is_http_url(value):
        if not urlsplit(value).netloc:
            raise ReferenceRefused("reference_url_invalid", "has no host; write a full URL like https://host/image.png")
        if has_userinfo(value):
            raise ReferenceRefused(
                "reference_url_invalid",
                "has a user name or password in it (user:pass@host); credentials do not belong in a table. Use a URL "
                "that needs none, a pre-signed URL, or an s3:// or gs:// URI read with the environment's credentials",
            )
        return "url"
    if is_object_uri(value):
        return "object"
    scheme = _SCHEME.match(value)
    if scheme and not _WINDOWS_DRIVE.match(value):
        name = scheme.group(1).lower()
        hint = "write the path without 'file://'" if name == "file" else "host it at one"
        raise ReferenceRefused(
            "reference_url_scheme",
            f"{name}: references are not supported; use an http(s) URL, an object-store URI or a file path ({hint})",
        )
    return "local"


def table_folder(source_uri: str) -> str | None:
    """The folder of a local table (an absolute path or a ``file://`` URI), or the prefix of a table on
    an object store; None when neither (a table read over http, say)."""
    if is_object_uri(source_uri):
        return normalize_uri(source_uri.rsplit("/", 1)[0])
    if source_uri.lower().startswith("file://"):
        source_uri = unquote(urlsplit(source_uri).path)
    return os.path.dirname(source_uri) if os.path.isabs(source_uri) else None


def real_roots(roots: Sequence[str]) -> tuple[str, ...]:
    return tuple(normalize_uri(r) if is_object_uri(r) else os.path.realpath(os.path.expanduser(r)) for r in roots)


def allowed_roots(configured: Sequence[str] | None, source_uri: str) -> tuple[str, ...]:
    """The configured roots, else the folder or prefix of the table the reference comes from."""
    if configured is not None:
        return real_roots(configured)
    folder = table_folder(source_uri)
    return real_roots([folder]) if folder else ()


def confine(path: str, roots: Sequence[str]) -> str:
    """The real path (or normalized URI) of ``path`` if it lies under one of ``roots`` (already real),
    else refuse. Object URIs only match URI roots, local paths only local roots."""
    if is_object_uri(path):
        real = normalize_uri(path)
        inside = any(is_object_uri(r) and real.startswith(r.rstrip("/") + "/") for r in roots)
    else:
        real = os.path.realpath(path)
        inside = any(not is_object_uri(r) and _within(real, r) for r in roots)
    if not inside:
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
        with open(real, "rb") as handle:
            return _read_checked(handle, path, keep=keep)
    except FileNotFoundError:
        raise ReferenceRefused("reference_unreadable", f"no file at {path}; check the path") from None
    except OSError as exc:
        raise ReferenceRefused(
            "reference_unreadable", f"cannot read {path} ({exc.strerror or exc}); make it readable"
        ) from None


def _read_checked(handle, what: str, *, keep: bool) -> tuple[str, bytes | None]:
    """Stream ``handle``: the image check on the first block, the size limit on every block (a file may
    grow after its size was read), sha256 of it all, and the bytes if ``keep``."""
    digest = hashlib.sha256()
    kept: list[bytes] = []
    size = 0
    for block in iter(lambda: handle.read(1 << 20), b""):
        if size == 0:
            check_image(block, what)
        size += len(block)
        check_size(size, what)
        digest.update(block)
        if keep:
            kept.append(block)
    if size == 0:
        check_image(b"", what)
    return digest.hexdigest(), b"".join(kept) if keep else None


def read_object(uri: str, roots: Sequence[str], *, keep: bool) -> tuple[str, bytes | None]:
    """``read_local`` for a file on an object store: one HEAD for the size, then a streamed GET."""
    real = confine(uri, roots)
    from nbpro_pipeline.storage.filesystem import url_to_fs  # storage imports pyarrow; keep this module light

    try:
        fs, path = url_to_fs(real)
        info = fs.info(path)
        if info.get("type") != "file":
            raise ReferenceRefused("reference_unreadable", f"{uri} is not a file; name an image file")
        check_size(int(info.get("size") or 0), uri)
        with fs.open(path, "rb") as handle:
            return _read_checked(handle, uri, keep=keep)
    except ReferenceRefused:
        raise
    except FileNotFoundError:
        raise ReferenceRefused("reference_unreadable", f"no object at {uri}; check the path") from None
    except ImportError as exc:
        raise ReferenceRefused(
            "reference_unreadable", f"cannot open {uri}: {exc}; install nbpro-pipeline[s3] or [gcs]"
        ) from None
    except Exception as exc:  # credentials, permissions, an unreachable store: this reference only
        raise ReferenceRefused("reference_unreadable", f"cannot read {uri} ({type(exc).__name__}: {exc})") from None


def read_reference(source: str, roots: Sequence[str], *, keep: bool) -> tuple[str, bytes | None]:
    """A local path or an object URI, checked and hashed."""
    return read_object(source, roots, keep=keep) if is_object_uri(source) else read_local(source, roots, keep=keep)


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False
