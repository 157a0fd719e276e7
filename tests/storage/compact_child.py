"""A ledger compaction in a process of its own, killed (SIGKILL) at a chosen point
(``python -m tests.storage.compact_child ROOT POINT``).

POINT: ``mid_write`` (half the compacted part written), ``after_commit`` (written, no source deleted yet),
``mid_delete`` (after the first source was deleted).
"""

from __future__ import annotations

import os
import signal
import sys

import pyarrow.parquet as pq

from nbpro_pipeline.storage import Storage, compaction


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(root: str, point: str) -> None:
    removes = 0
    real_remove, real_write = compaction._remove, pq.write_table

    def remove(storage, path, outcome):
        nonlocal removes
        if point == "after_commit" or (point == "mid_delete" and removes == 1):
            _die()
        removes += 1
        real_remove(storage, path, outcome)

    def write(table, fh, **kwargs):
        if point == "mid_write":
            fh.write(b"PAR1" + b"\0" * 4096)
            fh.flush()
            _die()
        real_write(table, fh, **kwargs)

    compaction._remove = remove
    compaction.pq.write_table = write
    compaction.compact_ledger(Storage(root), min_age_s=0)
    sys.exit(3)  # the kill point was never reached


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
