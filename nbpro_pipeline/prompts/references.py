"""Checking a row's reference images: http(s) URLs are kept as written (never fetched here); local paths
are resolved, confined to the allowed roots, and opened to check they are JPEG, PNG or WebP under 30 MB.
The rules themselves live in ``nbpro_pipeline.references_policy``, shared with the upload stage.

Only rows that have references come here, one Python call per row; files are looked at once per path
(and set of allowed roots).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from nbpro_pipeline.references_policy import ReferenceRefused, allowed_roots, check_scheme, read_local, real_roots


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
    """Resolves and checks reference entries. ``roots`` (if given) confine local paths, symlinks included;
    without roots a table may only name files under its own folder (see ``references_policy``)."""

    def __init__(self, roots: Sequence[str] | None = None) -> None:
        self.configured = list(roots) if roots is not None else None
        self.roots = list(real_roots(roots)) if roots is not None else None
        self._files: dict[tuple[str, tuple[str, ...]], _LocalFile] = {}

    def check_row(self, entries: Sequence[str | None], base_dir: str | None, source_uri: str) -> RowReferences:
        resolved: list[str] = []
        keys: list[str] = []
        local: list[str] = []
        issue: ReferenceIssue | None = None
        for number, raw in enumerate(e.strip() for e in entries if e is not None and e.strip()):
            label = f"reference {number + 1} ({raw!r})"
            try:
                is_url = check_scheme(raw)
            except ReferenceRefused as refused:
                issue = issue or ReferenceIssue(refused.code, f"{label}: {refused.message}")
                resolved.append(raw)
                keys.append(raw)
                continue
            if is_url:
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
            roots = allowed_roots(self.configured, source_uri)
            checked = self._check_file(path, roots)
            keys.append(checked.key or path)
            if checked.issue and not issue:
                issue = ReferenceIssue(checked.issue.code, f"{label}: {checked.issue.message}")
        return RowReferences(tuple(resolved), tuple(keys), tuple(local), issue)

    def _check_file(self, path: str, roots: tuple[str, ...]) -> _LocalFile:
        if (path, roots) not in self._files:
            try:
                sha, _ = read_local(path, roots, keep=False)
                self._files[path, roots] = _LocalFile("sha256:" + sha, None)
            except ReferenceRefused as refused:
                self._files[path, roots] = _LocalFile(None, ReferenceIssue(refused.code, refused.message))
        return self._files[path, roots]
