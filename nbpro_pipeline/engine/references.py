"""Reference images: hashed once, uploaded to Rivya once per content hash, reused across rows and runs.

The fingerprint of a request counts a reference by its content hash, so the same picture referenced by
two rows (or re-uploaded in a later run) never makes a request look new. Rivya only accepts references
from its Files API: local files and http(s) images are uploaded; the upload is remembered under the
storage root (``references/rivya/<sha256>.json``). OdiRouter fetches http(s) URLs itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import httpx

from nbpro_pipeline.media import sniff_image_mime
from nbpro_pipeline.models.common import RIVYA_MAX_FILE_BYTES, Provider
from nbpro_pipeline.models.request import ReferenceImage
from nbpro_pipeline.prompts.references import is_object_uri
from nbpro_pipeline.providers.base import ProviderClient
from nbpro_pipeline.storage.filesystem import Storage, url_to_fs


class ReferenceProblem(Exception):
    """A reference could not be read or uploaded; the row fails with ``reference_unreadable``."""


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


class _ObjectReadError(Exception):
    """Any failure reading a reference from an object store (botocore errors are not all OSErrors)."""


def _read_object(uri: str) -> bytes:
    try:
        fs, path = url_to_fs(uri)
        return fs.cat_file(path)
    except Exception as exc:
        raise _ObjectReadError(f"{type(exc).__name__}: {exc}") from None


class ReferenceResolver:
    def __init__(self, provider: Provider, client: ProviderClient, storage: Storage) -> None:
        self.provider = provider
        self.client = client
        self.storage = storage
        self._content: dict[str, tuple[str, bytes]] = {}  # source -> (sha256, bytes) for Rivya uploads
        self._uploads: dict[str, asyncio.Future[ReferenceImage]] = {}
        self._http: httpx.AsyncClient | None = None
        self.uploaded = 0
        self.reused = 0

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def for_fingerprint(self, sources: tuple[str, ...]) -> tuple[ReferenceImage, ...]:
        """References carrying content hashes, before any upload: enough to fingerprint the request."""
        if self.provider is Provider.ODIROUTER:
            for s in sources:
                if not _is_url(s):
                    raise ReferenceProblem(f"{s}: OdiRouter needs an http(s) URL; host the file and use its URL")
            return tuple(ReferenceImage(url=s) for s in sources)
        refs = []
        for source in sources:
            sha, _ = await self._read(source)
            refs.append(ReferenceImage(url=source, sha256=sha))
        return tuple(refs)

    async def uploaded_refs(self, refs: tuple[ReferenceImage, ...]) -> tuple[ReferenceImage, ...]:
        """Rivya: swap each reference for its Files API upload (one upload per content hash, ever)."""
        if self.provider is Provider.ODIROUTER:
            return refs
        return tuple([await self._upload(r) for r in refs])

    async def _read(self, source: str) -> tuple[str, bytes]:
        if source in self._content:
            return self._content[source]
        try:
            if _is_url(source):
                if self._http is None:
                    self._http = httpx.AsyncClient(timeout=60, follow_redirects=True)
                response = await self._http.get(source)
                response.raise_for_status()
                data = response.content
            elif is_object_uri(source):  # s3://, gs://: read with the environment's credentials
                data = await asyncio.to_thread(_read_object, source)
            else:
                data = await asyncio.to_thread(Path(source).read_bytes)
        except (OSError, httpx.HTTPError, _ObjectReadError) as exc:
            raise ReferenceProblem(f"{source}: cannot be read ({type(exc).__name__}: {exc})") from None
        if len(data) > RIVYA_MAX_FILE_BYTES:
            raise ReferenceProblem(f"{source}: {len(data)} bytes; Rivya accepts at most {RIVYA_MAX_FILE_BYTES}")
        if sniff_image_mime(data[:16]) is None:
            raise ReferenceProblem(f"{source}: not a JPEG, PNG or WebP image")
        entry = (hashlib.sha256(data).hexdigest(), data)
        self._content[source] = entry
        return entry

    async def _upload(self, ref: ReferenceImage) -> ReferenceImage:
        assert ref.sha256 is not None
        if ref.sha256 not in self._uploads:
            self._uploads[ref.sha256] = asyncio.ensure_future(self._upload_once(ref))
        else:
            self.reused += 1
        return await asyncio.shield(self._uploads[ref.sha256])

    async def _upload_once(self, ref: ReferenceImage) -> ReferenceImage:
        cache = self.storage.path("references", self.provider.value, f"{ref.sha256}.json")
        if self.storage.exists(cache):
            try:
                self.reused += 1
                return ReferenceImage.model_validate_json(self.storage.read_bytes(cache))
            except ValueError:
                pass  # a damaged cache entry: upload again
        _, data = await self._read(ref.url)
        try:
            uploaded = await self.client.upload_reference(data, name=Path(ref.url.split("?")[0]).name or None)
        except Exception as exc:
            raise ReferenceProblem(f"{ref.url}: upload failed ({exc})") from None
        self.uploaded += 1
        self.storage.write_bytes(cache, json.dumps(uploaded.model_dump(mode="json")).encode())
        return uploaded
