"""The CDN side: result images behind signed, expiring URLs, and uploaded reference files.

No API key here, as on the providers' CDNs: the signature (results) or the unguessable id (files)
is the capability. Download faults live here too, because they strike the bytes, not the API.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nbpro_pipeline.sandbox.faults import route_digest, should_drop_download
from nbpro_pipeline.sandbox.responses import DroppedConnection, text_response
from nbpro_pipeline.sandbox.runtime import SandboxRuntime
from nbpro_pipeline.sandbox.tasks import Phase
from nbpro_pipeline.sandbox.urls import BLOB_PATH, RESULT_PATH, SignatureCheck

_MIME = {"png": "image/png", "jpg": "image/jpeg"}


class CdnApi:
    def __init__(self, runtime: SandboxRuntime) -> None:
        self.rt = runtime

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/cdn/{provider}/results/{task_id}/{file_name}", self.result, methods=["GET"]),
            Route("/cdn/{provider}/blobs/{task_id}/{index}", self.blob, methods=["GET"]),
            Route("/cdn/rivya/files/{file_id}/{name}", self.uploaded_file, methods=["GET"]),
            Route("/cdn/{rest:path}", self.not_found, methods=["GET", "HEAD", "POST", "PUT", "DELETE"]),
        ]

    async def result(self, request: Request) -> Response:
        match = RESULT_PATH.match(request.url.path)
        if match is None:
            return text_response("Not Found", 404)
        provider, task_id, index, ext = match.groups()
        return await self._serve(request, provider, task_id, int(index), ext, _MIME[ext])

    async def blob(self, request: Request) -> Response:
        """The extension-less, ``application/octet-stream`` twin of ``result`` (mutation mode hands it out)."""
        match = BLOB_PATH.match(request.url.path)
        if match is None:
            return text_response("Not Found", 404)
        provider, task_id, index = match.groups()
        return await self._serve(request, provider, task_id, int(index), None, "application/octet-stream")

    async def _serve(
        self, request: Request, provider: str, task_id: str, index: int, ext: str | None, media_type: str
    ) -> Response:
        now = time.time()
        self.rt.settle_due(now)
        path = request.url.path
        check = self.rt.signer.check(path, request.query_params.get("exp"), request.query_params.get("sig"), now)
        if check is SignatureCheck.BAD:
            return text_response("Signature does not match", 403)
        if check is SignatureCheck.EXPIRED:
            return text_response("Request has expired", 403)
        task = self.rt.task(provider, task_id)
        if task is None or task.phase(now) is not Phase.SUCCEEDED or ext not in (None, task.output_format):
            return text_response("Not Found", 404)
        if index >= task.images:
            return text_response("Not Found", 404)
        data = await self.rt.image_bytes(task, index)
        digest = route_digest("GET", path)  # every download of a result is a fresh draw
        draw = self.rt.decisions.bound(provider, digest, self.rt.occurrences.next(provider, digest))
        if should_drop_download(self.rt.config.provider(provider).faults, draw):
            return DroppedConnection(data[: len(data) // 2], len(data), media_type)
        headers = {"Cache-Control": "private, max-age=3600"}
        if ext is not None:  # a blob store names no file: the bytes must speak for themselves
            headers["Content-Disposition"] = f'inline; filename="{task_id}.{ext}"'
        return Response(data, media_type=media_type, headers=headers)

    async def uploaded_file(self, request: Request) -> Response:
        stored = self.rt.store.files.get(request.path_params["file_id"])
        if stored is None:
            return text_response("Not Found", 404)
        data = self.rt.store.file_path(stored.id).read_bytes()
        return Response(data, media_type=stored.mime_type)

    async def not_found(self, request: Request) -> Response:
        return text_response("Not Found", 404)
