"""Where mutation mode answers: which provider endpoint a request is, and the alternative task paths.

A task whose plan returns other URLs (``returned_urls``) is served on an alternative path as well:
OdiRouter's ``/model/q/alt/nano_banana_pro/r/{id}/status|response|cancel`` (its documented paths
then answer 404, fal's rule being "follow the URLs you were given") and Rivya's ``/api/v1/tasks/{id}``
(the ``Location`` of a 202 create; the documented ``GET /api/v1/generations/{id}`` keeps working).
The alternative paths answer only for such tasks, and keep answering if mutation mode is switched off.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nbpro_pipeline.providers.odirouter.traits import ENDPOINT_ID as ODIROUTER_ENDPOINT_ID
from nbpro_pipeline.sandbox.odirouter_api import QUEUE_PATH, OdiRouterApi
from nbpro_pipeline.sandbox.rivya_api import RivyaApi
from nbpro_pipeline.sandbox.runtime import ODIROUTER, RIVYA

RIVYA_ALT_PREFIX = "/api/v1/tasks/"
ODI_ALT_PREFIX = f"/model/q/alt/{ODIROUTER_ENDPOINT_ID}/r/"
ALT_PREFIXES = (RIVYA_ALT_PREFIX, ODI_ALT_PREFIX)

_RIVYA_TASK = re.compile(r"^/api/v1/generations/([^/]+)$")
_RIVYA_ALT = re.compile(rf"^{re.escape(RIVYA_ALT_PREFIX)}([^/]+)$")
_ODI_TASK = re.compile(rf"^{re.escape(QUEUE_PATH)}/requests/([^/]+)/(status|response|cancel)$")
_ODI_ALT = re.compile(rf"^{re.escape(ODI_ALT_PREFIX)}([^/]+)/(status|response|cancel)$")
_ODI_METHODS = {"status": "GET", "response": "GET", "cancel": "PUT"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a provider request is: ``kind`` is create | task | submit | status | response | cancel | other."""

    provider: str
    kind: str
    task_id: str | None = None
    alt_path: bool = False


def classify(method: str, path: str) -> Endpoint | None:
    """The provider endpoint of a request, or None outside both provider APIs (CDN, admin)."""
    if path.startswith("/api/"):
        if path == "/api/v1/generations":
            return Endpoint(RIVYA, "create" if method == "POST" else "other")
        for pattern, alt in ((_RIVYA_TASK, False), (_RIVYA_ALT, True)):
            if method == "GET" and (m := pattern.match(path)):
                return Endpoint(RIVYA, "task", m.group(1), alt)
        return Endpoint(RIVYA, "other")
    if path.startswith("/model/"):
        if path == QUEUE_PATH:
            return Endpoint(ODIROUTER, "submit" if method == "POST" else "other")
        for pattern, alt in ((_ODI_TASK, False), (_ODI_ALT, True)):
            if (m := pattern.match(path)) and _ODI_METHODS[m.group(2)] == method:
                return Endpoint(ODIROUTER, m.group(2), m.group(1), alt)
        return Endpoint(ODIROUTER, "other")
    return None


def is_alt_status_poll(method: str, path: str) -> bool:
    """A task status read on an alternative path (counted with the documented ones in the stats)."""
    if method != "GET" or not path.startswith(ALT_PREFIXES):
        return False
    return path.startswith(RIVYA_ALT_PREFIX) or path.endswith("/status")


def odirouter_alt_urls(base_url: str, task_id: str) -> tuple[str, str, str]:
    """(status_url, response_url, cancel_url) on the alternative path."""
    prefix = f"{base_url}{ODI_ALT_PREFIX}{task_id}"
    return prefix + "/status", prefix + "/response", prefix + "/cancel"


def rivya_alt_path(task_id: str) -> str:
    return RIVYA_ALT_PREFIX + task_id


Handler = Callable[[Request], Awaitable[Response]]


class AltRoutes:
    """Serves the alternative paths of tasks whose create returned them, through the documented handlers."""

    def __init__(self, is_alt: Callable[[str, str], bool], rivya: RivyaApi, odirouter: OdiRouterApi) -> None:
        self.is_alt = is_alt
        self.rivya = rivya
        self.odirouter = odirouter

    def routes(self) -> list[BaseRoute]:
        odi = ODI_ALT_PREFIX + "{request_id}"
        return [
            Route(
                RIVYA_ALT_PREFIX + "{task_id}",
                self._only_alt(RIVYA, "task_id", self.rivya.get_generation),
                methods=["GET"],
            ),
            Route(odi + "/status", self._only_alt(ODIROUTER, "request_id", self.odirouter.status), methods=["GET"]),
            Route(odi + "/response", self._only_alt(ODIROUTER, "request_id", self.odirouter.response), methods=["GET"]),
            Route(odi + "/cancel", self._only_alt(ODIROUTER, "request_id", self.odirouter.cancel), methods=["PUT"]),
        ]

    def _only_alt(self, provider: str, param: str, handler: Handler) -> Handler:
        fallback = self.rivya.not_found if provider == RIVYA else self.odirouter.not_found

        async def serve(request: Request) -> Response:
            if not self.is_alt(provider, request.path_params[param]):
                return await fallback(request)  # no such path for a task that was not given it
            return await handler(request)

        return serve
