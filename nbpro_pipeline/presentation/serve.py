"""A small static server for a local storage root's galleries, images and report charts (``make dev``), so
the links in the Dagster UI open over HTTP: browsers refuse ``file://`` links from an ``http://`` page.

It serves only ``storage.browse.BROWSABLE`` folders, lists no directory and binds to loopback by default:
the ledger, journal and leases stay unserved.
"""

from __future__ import annotations

import functools
import posixpath
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from nbpro_pipeline.storage.browse import BROWSABLE


class _Handler(SimpleHTTPRequestHandler):
    def _allowed(self) -> bool:
        path = posixpath.normpath(unquote(urlsplit(self.path).path)).lstrip("/")
        return path.split("/", 1)[0] in BROWSABLE and ".." not in path.split("/")

    def send_head(self):  # noqa: ANN201 - the base class's signature
        if not self._allowed():
            self.send_error(404, "not a gallery, image or report file")
            return None
        return super().send_head()

    def list_directory(self, path):  # noqa: ANN001, ANN201 - the base class's signature
        self.send_error(404, "no directory listings")
        return None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # one line per thumbnail would drown make dev's output


def gallery_server(root: str | Path, host: str = "127.0.0.1", port: int = 8788) -> ThreadingHTTPServer:
    """A server for ``root`` (a local storage root); call ``serve_forever`` on it, ``shutdown`` to stop."""
    handler = functools.partial(_Handler, directory=str(Path(root).resolve()))
    return ThreadingHTTPServer((host, port), handler)
