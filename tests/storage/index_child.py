"""A fingerprint-index write in a process of its own, killed (SIGKILL) at a chosen point
(``python -m tests.storage.index_child ROOT POINT``).

POINT: ``mid_file`` (a few buckets of the bucket file written), ``before_manifest`` (the bucket file
committed, the manifest not yet written).
"""

from __future__ import annotations

import os
import signal
import sys

import pyarrow as pa

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, history_index


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(root: str, point: str) -> None:
    storage = Storage(root)
    streams = 0
    real_stream, real_write = pa.ipc.new_stream, storage.write_bytes

    def new_stream(*args, **kwargs):
        nonlocal streams
        streams += 1
        if point == "mid_file" and streams == 2:
            _die()
        return real_stream(*args, **kwargs)

    def write_bytes(path, data):
        if point == "before_manifest" and path.endswith(history_index.MANIFEST):
            _die()
        real_write(path, data)

    history_index.pa.ipc.new_stream = new_stream
    storage.write_bytes = write_bytes
    history_index.write_index(storage, Provider.RIVYA, Resolution.R1K)
    sys.exit(3)  # the kill point was never reached


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
