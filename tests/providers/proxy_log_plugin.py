"""A proxy.py plugin for the proxy tests: logs every request the proxy forwards, keep-alive ones too
(proxy.py's own access log writes one line per client connection)."""

from __future__ import annotations

import logging

from proxy.http.parser import HttpParser
from proxy.http.proxy import HttpProxyBasePlugin

log = logging.getLogger(__name__)


class EveryRequestLog(HttpProxyBasePlugin):
    def handle_client_request(self, request: HttpParser) -> HttpParser:
        method = (request.method or b"").decode()
        target = f"{(request.host or b'').decode()}:{request.port}"
        path = "" if method == "CONNECT" else (request.path or b"").decode()
        log.info("forwarded | %s %s%s", method, target, path)
        return request
