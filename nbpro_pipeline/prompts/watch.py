"""Noticing that prompt sources changed, cheaply: a sensor calls this every tick.

The content hash is what decides (touching a file without changing it must launch nothing), but
re-reading every table each tick would be wasteful, so hashes are cached by (size, mtime) in the
caller's cursor and a file is read again only when either changes.
"""

from __future__ import annotations

import hashlib
from typing import Any

from nbpro_pipeline.prompts.result import PromptTableError
from nbpro_pipeline.prompts.sources import resolve_sources


def fingerprint_sources(
    sources: list[str], cache: dict[str, Any], storage_options: dict | None = None
) -> tuple[str | None, dict[str, Any]]:
    """(sha256 over every source file's URI and content hash, or None if there is none; new cache)."""
    try:
        refs = resolve_sources(list(sources), storage_options)
    except PromptTableError:
        return None, {}
    new_cache: dict[str, Any] = {}
    combined = hashlib.sha256()
    seen = 0
    for ref in sorted(refs, key=lambda r: r.uri):
        try:
            info = ref.fs.info(ref.path)
        except (FileNotFoundError, OSError):
            continue
        # object stores: LastModified has 1 s resolution, so the ETag catches a same-size rewrite within it
        modified = str(info.get("mtime") or info.get("LastModified") or "")
        stamp = [info.get("size"), modified, str(info.get("ETag") or "")]
        cached = cache.get(ref.uri)
        if cached and cached.get("stamp") == stamp:
            digest = cached["sha256"]
        else:
            digest = hashlib.sha256(ref.fs.cat_file(ref.path)).hexdigest()
        new_cache[ref.uri] = {"stamp": stamp, "sha256": digest}
        combined.update(f"{ref.uri}\0{digest}\n".encode())
        seen += 1
    return (combined.hexdigest() if seen else None), new_cache
