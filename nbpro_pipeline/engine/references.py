"""Reference images: hashed once, uploaded once per content hash where the provider takes uploads, reused
across rows and runs.

The fingerprint of a request counts a reference by its content hash, so the same picture referenced by
two rows (or re-uploaded in a later run) never makes a request look new. A provider that accepts
references only from its files API gets local files, object-store files and http(s) images uploaded;
the upload is remembered under the storage root (``references/<provider>/<sha256>.json``). A provider
that fetches http(s) URLs itself gets those. Which one a provider is, is its ``traits.limits.references``.
What a reference may be (schemes, roots, size, content) is ``nbpro_pipeline.references_policy``.
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
from nbpro_pipeline.network_policy import AddressRefused, NetworkPolicy
from nbpro_pipeline.providers.base import ProviderClient, ProviderTraits
from nbpro_pipeline.providers.guarded_stack import build_guarded_http_client
from nbpro_pipeline.redaction import redact_url, redact_urls_in
from nbpro_pipeline.references_policy import (
    ReferenceRefused,
    allowed_roots,
    check_image,
    check_size,
    read_reference,
    reference_kind,
)
from nbpro_pipeline.storage.filesystem import Storage

MAX_REDIRECTS = 5


class ReferenceProblem(Exception):
    """A reference could not be read or uploaded; the row fails with ``reference_unreadable``."""


class ReferenceResolver:
    """Reads, checks and uploads references. Every source is checked here again against
    ``references_policy`` (scheme, roots, size, content), whatever validation said: the accepted table
    is a file anyone could have edited, and the engine is what opens files and sends them out.
    ``roots``: the configured reference roots; None means each row's own table folder. ``network``: what
    URL downloads may connect to besides public addresses (``network_policy``)."""

    def __init__(
        self,
        traits: ProviderTraits,
        client: ProviderClient,
        storage: Storage,
        roots: Sequence[str] | None = None,
        network: NetworkPolicy | None = None,
    ) -> None:
        self.traits = traits
        self.client = client
        self.storage = storage
        self.roots = list(roots) if roots is not None else None
        self.network = network or NetworkPolicy()
        self._content: dict[tuple[str, tuple[str, ...]], str] = {}  # (source, allowed roots) -> sha256
        self._bytes: dict[str, bytes] = {}  # sha256 -> content, for files-API uploads
        self._uploads: dict[str, asyncio.Future[ReferenceImage]] = {}
        self._http: httpx.AsyncClient | None = None
        self.uploaded = 0
        self.reused = 0

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def for_fingerprint(
        self, sources: tuple[str, ...], source_uri: str = "", row_number: int | None = None
    ) -> tuple[ReferenceImage, ...]:
        """References carrying content hashes, before any upload: enough to fingerprint the request.
        ``source_uri``: the table the row came from (its folder is the root when none is configured);
        with ``row_number``, a problem names the file and row as well as the column and item."""
        kinds = []
        for i, s in enumerate(sources):
            try:
                kinds.append(reference_kind(s) == "url")
            except ReferenceRefused as exc:
                raise self._problem(source_uri, row_number, i, s, exc.message) from None
        if not self.traits.uploads_references:
            name = self.traits.limits.display_name
            for i, (s, is_url) in enumerate(zip(sources, kinds, strict=True)):
                if not is_url:
                    hint = f"{name} needs an http(s) URL; host the file and use its URL"
                    raise self._problem(source_uri, row_number, i, s, hint)
            return tuple(ReferenceImage(url=s) for s in sources)
        roots = allowed_roots(self.roots, source_uri)
        refs = []
        for i, (source, is_url) in enumerate(zip(sources, kinds, strict=True)):
            try:
                sha = await self._read(source, () if is_url else roots)
            except ReferenceProblem as exc:
                raise self._problem(source_uri, row_number, i, source, str(exc)) from None
            refs.append(ReferenceImage(url=source, sha256=sha))
        return tuple(refs)

    @staticmethod
    def _problem(source_uri: str, row_number: int | None, index: int, source: str, what: str) -> ReferenceProblem:
        """Where (file and row when known, column reference_images, which item), the reference with
        credentials stripped, then what is wrong and what to do."""
        where = f"{source_uri}, row {row_number}, " if source_uri and row_number is not None else ""
        return ReferenceProblem(f"{where}column reference_images, item {index + 1} ({redact_url(source)}): {what}")

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
                check_image(data, "the answer")
                sha = hashlib.sha256(data).hexdigest()
            else:
                if reference_kind(source) == "local" and not os.path.isabs(source):
                    raise ReferenceProblem(f"{source}: not an absolute path; validation resolves local references")
                sha, data = await asyncio.to_thread(read_reference, source, roots, keep=True)
        except ReferenceRefused as exc:
            raise ReferenceProblem(exc.message) from None
        except AddressRefused as exc:
            raise ReferenceProblem(f"refused before connecting: {exc}") from None
        except (OSError, httpx.HTTPError) as exc:
            raise ReferenceProblem(f"cannot be read ({type(exc).__name__}: {redact_urls_in(str(exc))})") from None
        assert data is not None
        self._bytes[sha] = data
        self._content[key] = sha
        return sha

    async def _download(self, url: str) -> bytes:
        """The body of ``url``, following at most ``MAX_REDIRECTS`` redirects one by one (each hop's
        address is checked where it is connected to), refused as soon as it passes the size limit."""
        if self._http is None:
            # the providers' stack (env proxies, certificates) guarded by the network policy; never the API key
            self._http = build_guarded_http_client(self.network, timeout=60, max_connections=8)
        request = self._http.build_request("GET", url)
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._http.send(request, stream=True)
            try:
                if response.next_request is None:
                    response.raise_for_status()
                    return await _body(response)
                request = response.next_request  # httpx resolves Location and drops credentials across hosts
                reference_kind(str(request.url))  # a hop may not bring back a scheme or credentials we refuse
            finally:
                await response.aclose()
        raise ReferenceRefused("reference_unreadable", f"more than {MAX_REDIRECTS} redirects; link the image itself")

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
            raise ReferenceProblem(f"{redact_url(ref.url)}: not checked before upload; nothing was sent")
        try:
            uploaded = await self.client.upload_reference(data, name=Path(ref.url.split("?")[0]).name or None)
        except Exception as exc:
            raise ReferenceProblem(f"{redact_url(ref.url)}: upload failed ({redact_urls_in(str(exc))})") from None
        self.uploaded += 1
        data = json.dumps(uploaded.model_dump(mode="json")).encode()
        await asyncio.to_thread(self.storage.write_bytes, cache, data)
        return uploaded


async def _body(response: httpx.Response) -> bytes:
    """A streamed body, refused at the size limit (declared or counted), never held whole if larger."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit():
        check_size(int(declared), "the answer")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        check_size(size, "the answer")
        chunks.append(chunk)
    return b"".join(chunks)
