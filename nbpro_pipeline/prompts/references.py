"""Checking a row's reference images: http(s) URLs are kept as written (never fetched here); local paths
and object-store URIs (``s3://``, ``gs://``, ...) are resolved, confined to the allowed roots, and opened
to check they are JPEG, PNG or WebP under 30 MB. A relative path in a table read from an object store
resolves against the table's own prefix, so a bucket holds tables and their ``refs/`` like a folder does.

Only rows that have references come here, one Python call per row; files are looked at once per path.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from nbpro_pipeline.media import sniff_image_mime
from nbpro_pipeline.models.common import RIVYA_MAX_FILE_BYTES

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_MB = 1024 * 1024

# Object stores a reference file may live on: read with the environment's credentials and uploaded to
# Rivya like a local file. Other schemes (ftp:, data:, memory:) stay rejected.
OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


def is_object_uri(value: str) -> bool:
    scheme, sep, _ = value.partition("://")
    return bool(sep) and scheme.lower() in OBJECT_STORE_SCHEMES


def _normalize_uri(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    return f"{scheme.lower()}://{posixpath.normpath(rest)}"


def _join_uri(base: str, relative: str) -> str | None:
    """``relative`` under the prefix ``base`` (``s3://bucket/dir``); None if it climbs out of the bucket."""
    scheme, _, rest = base.partition("://")
    bucket = rest.split("/", 1)[0]
    joined = posixpath.normpath(f"{rest}/{relative}")
    return f"{scheme.lower()}://{joined}" if joined.startswith(bucket + "/") else None


@dataclass(frozen=True)
class ReferenceIssue:
    code: str  # reference_url_scheme, reference_url_invalid, reference_outside_roots, reference_unreadable, ...
    message: str


@dataclass(frozen=True)
class RowReferences:
    resolved: tuple[str, ...]  # http(s) URLs as written, local files as absolute paths
    keys: tuple[str, ...]  # identity for prompt ids: the URL, or sha256 of a local file's bytes
    local: tuple[str, ...]  # the entries (as written) that are local files
    issue: ReferenceIssue | None = None


@dataclass(frozen=True)
class _LocalFile:
    key: str | None
    issue: ReferenceIssue | None


class ReferenceChecker:
    """Resolves and checks reference entries; ``roots`` (if given) confine local paths, symlinks included."""

    def __init__(self, roots: Sequence[str] | None = None) -> None:
        self.roots = (
            [_normalize_uri(r) if is_object_uri(r) else os.path.realpath(os.path.expanduser(r)) for r in roots]
            if roots is not None
            else None
        )
        self._files: dict[str, _LocalFile] = {}

    def check_row(self, entries: Sequence[str | None], base_dir: str | None, source_uri: str) -> RowReferences:
        resolved: list[str] = []
        keys: list[str] = []
        local: list[str] = []
        issue: ReferenceIssue | None = None
        for number, raw in enumerate(e.strip() for e in entries if e is not None and e.strip()):
            label = f"reference {number + 1} ({raw!r})"
            if raw.lower().startswith(("http://", "https://")):
                if not urlsplit(raw).netloc:
                    issue = issue or ReferenceIssue(
                        "reference_url_invalid", f"{label} has no host; write a full URL like https://host/image.png"
                    )
                resolved.append(raw)
                keys.append(raw)
                continue
            in_bucket = (
                base_dir is not None
                and is_object_uri(base_dir)
                and not _SCHEME.match(raw)
                and not os.path.isabs(os.path.expanduser(raw))
            )
            if is_object_uri(raw) or in_bucket:
                uri = _normalize_uri(raw) if is_object_uri(raw) else _join_uri(base_dir or "", raw)
                resolved.append(uri or raw)
                local.append(raw)
                if uri is None:
                    keys.append(raw)
                    issue = issue or ReferenceIssue(
                        "reference_outside_roots",
                        f"{label} climbs out of the bucket of {source_uri}; keep references under the table's "
                        "bucket or write the full URI",
                    )
                    continue
                checked = self._check_file(uri)
                keys.append(checked.key or uri)
                if checked.issue and not issue:
                    issue = ReferenceIssue(checked.issue.code, f"{label}: {checked.issue.message}")
                continue
            scheme = _SCHEME.match(raw)
            if scheme and not _WINDOWS_DRIVE.match(raw):
                hint = "write the path without 'file://'" if scheme.group(1).lower() == "file" else "host it at one"
                issue = issue or ReferenceIssue(
                    "reference_url_scheme",
                    f"{label}: {scheme.group(1)}: references are not supported; use an http(s) URL or a local "
                    f"file path ({hint})",
                )
                resolved.append(raw)
                keys.append(raw)
                continue
            path = os.path.expanduser(raw)
            if not os.path.isabs(path):
                if base_dir is None:
                    issue = issue or ReferenceIssue(
                        "reference_unreadable",
                        f"{label} is a relative path in a table read from {source_uri}, so it cannot be "
                        "resolved; use an absolute path or an http(s) URL",
                    )
                    resolved.append(raw)
                    keys.append(raw)
                    local.append(raw)
                    continue
                path = os.path.join(base_dir, path)
            path = os.path.abspath(path)
            resolved.append(path)
            local.append(raw)
            checked = self._check_file(path)
            keys.append(checked.key or path)
            if checked.issue and not issue:
                issue = ReferenceIssue(checked.issue.code, f"{label}: {checked.issue.message}")
        return RowReferences(tuple(resolved), tuple(keys), tuple(local), issue)

    def _check_file(self, path: str) -> _LocalFile:
        if path not in self._files:
            self._files[path] = self._inspect_object(path) if is_object_uri(path) else self._inspect(path)
        return self._files[path]

    @staticmethod
    def _issue(code: str, message: str) -> _LocalFile:
        return _LocalFile(None, ReferenceIssue(code, message))

    def _inspect(self, path: str) -> _LocalFile:
        """The file's content key, or what is wrong with it (the caller prefixes which reference it is)."""
        real = os.path.realpath(path)
        if self.roots is not None and not any(_within(real, root) for root in self.roots):
            return self._issue(
                "reference_outside_roots",
                f"{real} is outside the allowed reference roots ({', '.join(self.roots) or 'none'}); move the "
                "image under one of them or add its folder as a reference root",
            )
        try:
            st = os.stat(real)
            if not os.path.isfile(real):
                return self._issue("reference_unreadable", f"{path} is not a file; name an image file")
            if st.st_size > RIVYA_MAX_FILE_BYTES:
                return self._issue(
                    "reference_too_large",
                    f"{path} has {st.st_size / _MB:.1f} MB; a reference image may have at most "
                    f"{RIVYA_MAX_FILE_BYTES // _MB} MB; shrink or recompress it",
                )
            digest = hashlib.sha256()
            with open(real, "rb") as handle:
                head = handle.read(12)
                digest.update(head)
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except FileNotFoundError:
            return self._issue("reference_unreadable", f"no file at {path}; check the path")
        except OSError as exc:
            return self._issue("reference_unreadable", f"cannot read {path} ({exc.strerror or exc}); make it readable")
        if sniff_image_mime(head) is None:
            return self._issue(
                "reference_not_image",
                f"{path} is not a JPEG, PNG or WebP image (judged by its first bytes); export it in one of those "
                "formats",
            )
        return _LocalFile("sha256:" + digest.hexdigest(), None)

    def _inspect_object(self, uri: str) -> _LocalFile:
        """Like ``_inspect`` for a file on an object store (one HEAD, one GET)."""
        if self.roots is not None and not any(uri.startswith(root.rstrip("/") + "/") for root in self.roots):
            return self._issue(
                "reference_outside_roots",
                f"{uri} is outside the allowed reference roots ({', '.join(self.roots) or 'none'}); move the "
                "image under one of them or add its prefix as a reference root",
            )
        from nbpro_pipeline.storage.filesystem import url_to_fs

        try:
            fs, path = url_to_fs(uri)
            info = fs.info(path)
            if info.get("type") != "file":
                return self._issue("reference_unreadable", f"{uri} is not a file; name an image file")
            size = int(info.get("size") or 0)
            if size > RIVYA_MAX_FILE_BYTES:
                return self._issue(
                    "reference_too_large",
                    f"{uri} has {size / _MB:.1f} MB; a reference image may have at most "
                    f"{RIVYA_MAX_FILE_BYTES // _MB} MB; shrink or recompress it",
                )
            data = fs.cat_file(path)
        except FileNotFoundError:
            return self._issue("reference_unreadable", f"no object at {uri}; check the path")
        except ImportError as exc:
            return self._issue("reference_unreadable", f"cannot open {uri}: {exc}; install nbpro-pipeline[s3] or [gcs]")
        except Exception as exc:  # credentials, permissions, an unreachable store: this reference only
            return self._issue("reference_unreadable", f"cannot read {uri} ({type(exc).__name__}: {exc})")
        if sniff_image_mime(data[:16]) is None:
            return self._issue(
                "reference_not_image",
                f"{uri} is not a JPEG, PNG or WebP image (judged by its first bytes); export it in one of those "
                "formats",
            )
        return _LocalFile("sha256:" + hashlib.sha256(data).hexdigest(), None)


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False
