"""A ``socketserver`` server (``http.server``, the gallery server) served for a test in a thread of its own."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[int]:
    """Serve until the block ends, then shut down and close; yields the port. ``shutdown`` waits for
    ``serve_forever``'s next look, 0.5 s by default, which every test would pay: it looks every 20 ms."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
