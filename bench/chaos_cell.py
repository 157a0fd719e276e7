"""``nbpro run-cell`` with phase markers, for ``bench/chaos.py`` to aim its SIGKILLs.

Before each submit, poll, download and storage write (ledger part, journal segment, image) this prints
one line ``@@chaos <phase>`` to stdout and flushes, so the parent can kill the process at that moment.
Nothing in the pipeline's behaviour changes: the hooks wrap the real methods and call them.

``CHAOS_TARGET=<phase>`` and ``CHAOS_PAUSE_MS=<ms>`` widen one window: in the middle of that phase (a
download or a file write has begun, a submit request is in flight) the process prints
``@@chaos <phase>-mid`` and sleeps, so the parent's kill lands *inside* the write or request rather than
before or after it. A kill then leaves a half-written temporary file or an answered-but-unjournaled
submit, which is exactly what the next run must cope with.

``CHAOS_ERROR_RATE=<0..1>`` makes that share of stored results raise an unexpected exception after the
task was submitted and paid (a stand-in for a bug or a disk error while placing the image), seeded by
``CHAOS_ERROR_SEED``.

    python bench/chaos_cell.py TABLE --cell 'rivya|1K' --storage DIR --json   (same options as run-cell)

``bench/chaos.py`` starts it through ``child_main`` from a multiprocessing fork server that has already
imported the pipeline: each run is still a separate process, killed with SIGKILL, but it starts in
milliseconds instead of the seconds an interpreter needs to import pyarrow and friends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

import nbpro_pipeline.costs.estimate  # noqa: F401 - imported here so a fork server preloads them
import nbpro_pipeline.engine.standalone  # noqa: F401
import nbpro_pipeline.prompts  # noqa: F401
from nbpro_pipeline.cli import main
from nbpro_pipeline.engine import placing
from nbpro_pipeline.providers import OdiRouterClient, RivyaClient
from nbpro_pipeline.storage.filesystem import Storage

TARGET = ""
NTH = 1  # pause at this occurrence of the target phase only
PAUSE_S = 0.0
ERROR_RATE = 0.0
_errors = random.Random(0)
_seen: dict[str, int] = {}


def configure() -> None:
    """Read the CHAOS_* settings now (not at import: a fork server imports this module once, early)."""
    global TARGET, NTH, PAUSE_S, ERROR_RATE, _errors
    TARGET = os.environ.get("CHAOS_TARGET", "")
    NTH = int(os.environ.get("CHAOS_NTH", "1"))
    PAUSE_S = float(os.environ.get("CHAOS_PAUSE_MS", "0")) / 1000
    ERROR_RATE = float(os.environ.get("CHAOS_ERROR_RATE", "0"))
    _errors = random.Random(os.environ.get("CHAOS_ERROR_SEED", "0"))


def mark(phase: str) -> None:
    sys.stdout.write(f"@@chaos {phase}\n")
    sys.stdout.flush()


def pause_if_target(phase: str) -> None:
    """Mid-phase: announce it and hold still for a moment if this is the occurrence being aimed at."""
    if phase != TARGET or PAUSE_S <= 0:
        return
    _seen[phase] = _seen.get(phase, 0) + 1
    if _seen[phase] == NTH:
        mark(f"{phase}-mid")
        time.sleep(PAUSE_S)  # blocking on purpose: nothing else in the process moves on meanwhile


class _MidWrite:
    """A file wrapper that pauses after its first write (the file is then half written)."""

    def __init__(self, fh: BinaryIO, phase: str) -> None:
        self._fh = fh
        self._phase = phase
        self._paused = False

    def write(self, data: Any) -> int:
        n = self._fh.write(data)
        if not self._paused:
            self._paused = True
            self._fh.flush()
            pause_if_target(self._phase)
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def _write_phase(path: str) -> str:
    for phase in ("ledger", "journal", "images", "quarantine"):
        if f"/{phase}/" in path:
            return {"images": "image-write", "quarantine": "image-write"}.get(phase, f"{phase}-write")
    return "other-write"


def install_hooks() -> None:
    configure()
    real_open_atomic = Storage.open_atomic

    @contextlib.contextmanager
    def open_atomic(self: Storage, path: str) -> Iterator[BinaryIO]:
        phase = _write_phase(path)
        mark(phase)
        with real_open_atomic(self, path) as fh:
            yield _MidWrite(fh, phase)  # type: ignore[misc]

    Storage.open_atomic = open_atomic  # type: ignore[method-assign]

    if ERROR_RATE > 0:
        real_lineage = placing.lineage

        def lineage(cell, attempt, charged):
            if _errors.random() < ERROR_RATE:
                mark("injected-error")
                raise RuntimeError("chaos: injected error while placing a paid image")
            return real_lineage(cell, attempt, charged)

        placing.lineage = lineage

    for cls in (RivyaClient, OdiRouterClient):
        real_submit, real_poll, real_fetch = cls.submit, cls.poll, cls.fetch_result

        async def submit(self, request, *, idempotency_key=None, _real=real_submit):
            mark("submit")
            task = asyncio.ensure_future(_real(self, request, idempotency_key=idempotency_key))
            if TARGET == "submit" and PAUSE_S > 0:
                await asyncio.sleep(0.003)  # let the request leave, then hold the process mid-request
                pause_if_target("submit")
            result = await task
            mark("submitted")  # the provider answered; the task id is not journaled yet
            pause_if_target("submitted")
            return result

        async def poll(self, task_id, _real=real_poll):
            mark("poll")
            return await _real(self, task_id)

        async def fetch_result(self, snapshot, sink, *, index=0, _real=real_fetch):
            mark("download")
            return await _real(self, snapshot, _MidWrite(sink, "download"), index=index)

        cls.submit, cls.poll, cls.fetch_result = submit, poll, fetch_result  # type: ignore[method-assign]


class _ConnWriter:
    """stdout for a forked run: every write goes to the parent through a multiprocessing pipe."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def write(self, text: str) -> int:
        self._conn.send_bytes(text.encode())
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def child_main(argv: list[str], env: dict[str, str], conn: Any) -> None:
    os.environ.update(env)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # log lines and tracebacks of the run: not the chaos report's business
    sys.stdout = _ConnWriter(conn)  # type: ignore[assignment]
    install_hooks()
    main(["run-cell", *argv])


if __name__ == "__main__":
    install_hooks()
    main(["run-cell", *sys.argv[1:]])
