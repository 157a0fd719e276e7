"""Reference images: hashed once, uploaded to Rivya once per content hash, reused across rows and runs.

The fingerprint of a request counts a reference by its content hash, so the same picture referenced by
two rows (or re-uploaded in a later run) never makes a request look new. Rivya only accepts references
from its Files API: local files, object-store files and http(s) images are uploaded; the upload is remembered under the
storage root (``references/<provider>/<sha256>.json``). OdiRouter fetches http(s) URLs itself. Which of
the two a provider does is its ``traits.limits.references``. What a
reference may be (schemes, roots, size, content) is ``nbpro_pipeline.references_policy``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import httpx

from nbpro_pipeline.models.request import ReferenceImage
from nbpro_pipeline.providers.base import ProviderClient, ProviderTraits
from nbpro_pipeline.providers.http_stack import build_http_client
from nbpro_pipeline.references_policy import (
    ReferenceRefused,
    allowed_roots,
    check_image,
    check_size,
    read_reference,
    reference_kind,
)
from nbpro_pipeline.storage.filesystem import Storage


class ReferenceProblem(Exception):
    """A reference could not be read or uploaded; the row fails with ``reference_unreadable``."""


class ReferenceResolver:
    """Reads, checks and uploads references. Every source is checked here again against
    ``references_policy`` (scheme, roots, size, content), whatever validation said: the accepted table
    is a file anyone could have edited, and the engine is what opens files and sends them out.
    ``roots``: the configured reference roots; None means each row's own table folder."""

    def __init__(
        self, traits: ProviderTraits, client: ProviderClient, storage: Storage, roots: Sequence[str] | None = None
    ) -> None:
        self.traits = traits
        self.client = client
        self.storage = storage
        self.roots = list(roots) if roots is not None else None
        self._content: dict[tuple[str, tuple[str, ...]], str] = {}  # (source, allowed roots) -> sha256
        self._bytes: dict[str, bytes] = {}  # sha256 -> content, for Rivya uploads
        self._uploads: dict[str, asyncio.Future[ReferenceImage]] = {}
        self._http: httpx.AsyncClient | None = None
        self.uploaded = 0
        self.reused = 0

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def for_fingerprint(self, sources: tuple[str, ...], source_uri: str = "") -> tuple[ReferenceImage, ...]:
        """References carrying content hashes, before any upload: enough to fingerprint the request.
        ``source_uri``: the table the row came from (its folder is the root when none is configured)."""
        kinds = []
        for s in sources:
            try:
                kinds.append(reference_kind(s) == "url")
            except ReferenceRefused as exc:
                raise ReferenceProblem(f"{s}: {exc.message}") from None
        if not self.traits.uploads_references:
            name = self.traits.limits.display_name
            for s, is_url in zip(sources, kinds, strict=True):
                if not is_url:
                    raise ReferenceProblem(f"{s}: {name} needs an http(s) URL; host the file and use its URL")
            return tuple(ReferenceImage(url=s) for s in sources)
        roots = allowed_roots(self.roots, source_uri)
        refs = []
        for source, is_url in zip(sources, kinds, strict=True):
            sha = await self._read(source, () if is_url else roots)
            refs.append(ReferenceImage(url=source, sha256=sha))
        return tuple(refs)

    async def uploaded_refs(self, refs: tuple[ReferenceImage, ...]) -> tuple[ReferenceImage, ...]:
        """Swap each reference for its files-API upload (one upload per content hash, ever), where the
        provider takes references that way."""
        if not self.traits.uploads_references:
            return refs
        return tuple([await self._upload(r) for r in refs])

    async def _read(self, source: str, roots: tuple[str, ...]) -> str:
        key = (source, roots)
        if key in self._content:
            return self._content[key]
        try:
            if reference_kind(source) == "url":
                data = await self._download(source)
                check_image(data, source)
                sha = hashlib.sha256(data).hexdigest()
            else:
                if reference_kind(source) == "local" and not os.path.isabs(source):
                    raise ReferenceProblem(f"{source}: not an absolute path; validation resolves local references")
                sha, data = await asyncio.to_thread(read_reference, source, roots, keep=True)
        except ReferenceRefused as exc:
            raise ReferenceProblem(f"{source}: {exc.message}") from None
        except (OSError, httpx.HTTPError) as exc:
            raise ReferenceProblem(f"{source}: cannot be read ({type(exc).__name__}: {exc})") from None
        assert data is not None
        self._bytes[sha] = data
        self._content[key] = sha
        return sha

    async def _download(self, url: str) -> bytes:
        """The body of ``url``, refused as soon as it passes the size limit (never held whole if larger)."""
        if self._http is None:
            # the providers' stack (env proxies and certificates), its own pool, never the API key
            self._http = build_http_client(timeout=60, max_connections=8)
        async with self._http.stream("GET", url, follow_redirects=True) as response:
            response.raise_for_status()
            declared = response.headers.get("content-length", "")
            if declared.isdigit():
                check_size(int(declared), url)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                check_size(size, url)
                chunks.append(chunk)
        return b"".join(chunks)

    async def _upload(self, ref: ReferenceImage) -> ReferenceImage:
        assert ref.sha256 is not None
        if ref.sha256 not in self._uploads:
            self._uploads[ref.sha256] = asyncio.ensure_future(self._upload_once(ref))
        else:
            self.reused += 1
        return await asyncio.shield(self._uploads[ref.sha256])

    async def _upload_once(self, ref: ReferenceImage) -> ReferenceImage:
        assert ref.sha256 is not None
        cache = self.storage.path("references", str(self.traits.name), f"{ref.sha256}.json")
        if await asyncio.to_thread(self.storage.exists, cache):
            try:
                self.reused += 1
                return ReferenceImage.model_validate_json(await asyncio.to_thread(self.storage.read_bytes, cache))
            except ValueError:
                pass  # a damaged cache entry: upload again
        data = self._bytes.get(ref.sha256)
        if data is None:  # only references checked by for_fingerprint are ever uploaded
            raise ReferenceProblem(f"{ref.url}: not checked before upload; nothing was sent")
        try:
            uploaded = await self.client.upload_reference(data, name=Path(ref.url.split("?")[0]).name or None)
        except Exception as exc:
            raise ReferenceProblem(f"{ref.url}: upload failed ({exc})") from None
        self.uploaded += 1
        data = json.dumps(uploaded.model_dump(mode="json")).encode()
        await asyncio.to_thread(self.storage.write_bytes, cache, data)
        return uploaded
