"""A journal pruning in a process of its own, killed (SIGKILL) at a chosen point
(``python -m tests.storage.prune_child ROOT POINT``).

POINT: ``mid_write`` (the compacted file half written), ``after_commit`` (written, nothing deleted yet),
``mid_delete`` (after the first replaced file was deleted).
"""

from __future__ import annotations

import os
import signal
import sys

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage, journal_prune
from tests.storage.test_journal_prune import RULES


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(root: str, point: str) -> None:
    storage = Storage(root)
    removes = 0
    real_remove, real_open = journal_prune._remove, storage.open_atomic

    def remove(st, path):
        nonlocal removes
        if point == "after_commit" or (point == "mid_delete" and removes == 1):
            _die()
        removes += 1
        return real_remove(st, path)

    def open_atomic(path):
        ctx = real_open(path)
        if point == "mid_write" and "/compact-" in path:
            fh = ctx.__enter__()
            fh.write(b'{"replaces": ["run-1/')
            fh.flush()
            _die()
        return ctx

    def remove_all(st, paths):
        if not st.is_local and len(paths) > 2:  # object stores delete in bulk: kill points on the first two
            remove(st, paths[0])
            remove(st, paths[1])
            st.fs.rm(paths[2:])
            return len(paths)
        return sum(remove(st, p) for p in paths)

    journal_prune._remove = remove
    journal_prune._remove_all = remove_all
    storage.open_atomic = open_atomic
    journal_prune.prune_journal(storage, Provider.RIVYA, Resolution.R1K, RULES)
    sys.exit(3)  # the kill point was never reached


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
