"""Checking a row's reference images: http(s) URLs are kept as written (never fetched here); local paths
and object-store URIs (``s3://``, ``gs://``, ...) are resolved, confined to the allowed roots, and opened
to check they are JPEG, PNG or WebP under 30 MB. A relative path in a table read from an object store
resolves against the table's own prefix. The rules themselves live in ``nbpro_pipeline.references_policy``,
shared with the upload stage.

Only rows that have references come here, one Python call per row; files are looked at once per path
(and set of allowed roots).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from nbpro_pipeline.redaction import redact_url
from nbpro_pipeline.references_policy import (
    ReferenceRefused,
    allowed_roots,
    is_object_uri,
    join_uri,
    normalize_uri,
    read_reference,
    reference_kind,
)


@dataclass(frozen=True)
class ReferenceIssue:
    code: str  # reference_url_scheme, reference_url_invalid, reference_outside_roots, reference_unreadable, ...
    message: str


@dataclass(frozen=True)
class RowReferences:
    resolved: tuple[str, ...]  # http(s) URLs as written, files as absolute paths or normalized URIs
    keys: tuple[str, ...]  # identity for prompt ids: the URL, or sha256 of a file's bytes
    local: tuple[str, ...]  # the entries (as written) that are files (local or on an object store)
    issue: ReferenceIssue | None = None


@dataclass(frozen=True)
class _CheckedFile:
    key: str | None
    issue: ReferenceIssue | None


class ReferenceChecker:
    """Resolves and checks reference entries. ``roots`` (if given) confine files, symlinks included;
    without roots a table may only name files under its own folder or prefix (see ``references_policy``)."""

    def __init__(self, roots: Sequence[str] | None = None) -> None:
        self.configured = list(roots) if roots is not None else None
        self._files: dict[tuple[str, tuple[str, ...]], _CheckedFile] = {}

    def check_row(self, entries: Sequence[str | None], base_dir: str | None, source_uri: str) -> RowReferences:
        resolved: list[str] = []
        keys: list[str] = []
        local: list[str] = []
        issue: ReferenceIssue | None = None
        for number, raw in enumerate(e.strip() for e in entries if e is not None and e.strip()):
            label = f"reference {number + 1} ({redact_url(raw)!r})"  # the rejected table must not keep a password
            try:
                kind = reference_kind(raw)
            except ReferenceRefused as refused:
                issue = issue or ReferenceIssue(refused.code, f"{label}: {refused.message}")
                resolved.append(raw)
                keys.append(raw)
                continue
            if kind == "url":
                resolved.append(raw)
                keys.append(raw)
                continue
            local.append(raw)
            target, problem = self._resolve(raw, kind, base_dir, source_uri, label)
            if target is None:
                issue = issue or problem
                resolved.append(raw)
                keys.append(raw)
                continue
            resolved.append(target)
            checked = self._check_file(target, allowed_roots(self.configured, source_uri))
            keys.append(checked.key or target)
            if checked.issue and not issue:
                issue = ReferenceIssue(checked.issue.code, f"{label}: {checked.issue.message}")
        return RowReferences(tuple(resolved), tuple(keys), tuple(local), issue)

    @staticmethod
    def _resolve(
        raw: str, kind: str, base_dir: str | None, source_uri: str, label: str
    ) -> tuple[str | None, ReferenceIssue | None]:
        """The absolute path or normalized URI a file reference names, or why it names none."""
        if kind == "object":
            return normalize_uri(raw), None
        path = os.path.expanduser(raw)
        if os.path.isabs(path):
            return os.path.abspath(path), None
        if base_dir is not None and is_object_uri(base_dir):
            uri = join_uri(base_dir, raw)
            if uri is None:
                return None, ReferenceIssue(
                    "reference_outside_roots",
                    f"{label} climbs out of the bucket of {source_uri}; keep references under the table's bucket "
                    "or write the full URI",
                )
            return uri, None
        if base_dir is None:
            return None, ReferenceIssue(
                "reference_unreadable",
                f"{label} is a relative path in a table read from {source_uri}, so it cannot be resolved; use an "
                "absolute path or an http(s) URL",
            )
        return os.path.abspath(os.path.join(base_dir, path)), None

    def _check_file(self, target: str, roots: tuple[str, ...]) -> _CheckedFile:
        if (target, roots) not in self._files:
            try:
                sha, _ = read_reference(target, roots, keep=False)
                self._files[target, roots] = _CheckedFile("sha256:" + sha, None)
            except ReferenceRefused as refused:
                self._files[target, roots] = _CheckedFile(None, ReferenceIssue(refused.code, refused.message))
        return self._files[target, roots]
