"""Create a file only if nothing is at its path yet, as one atomic step on the storage root's filesystem.

Check-then-write is never used: two writers could both see "absent". Each supported filesystem has a
primitive that the filesystem itself decides:

- local disk (and NFS): the content goes to a hidden temp file that is then hard-linked into place;
  ``link`` fails if the name exists, and a reader never sees a half-written file (``O_CREAT|O_EXCL``
  would expose an empty file between create and write);
- S3 and S3-compatible stores: a PUT with ``If-None-Match: *`` (s3fs ``pipe_file(mode="create")``);
  a store that ignores the header is caught by ``verify_exclusive_create`` and refused;
- Google Cloud Storage: gcsfs sends ``ifGenerationMatch=0`` for the same call (not tested here: no GCS
  server on this machine);
- ``memory://`` lives in one process: its check-then-write runs under a process-wide lock.

Anything else raises ``ExclusiveCreateUnsupported``: fsspec's generic fallback checks, then writes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from typing import Literal

from nbpro_pipeline.storage.filesystem import Storage

ExclusiveKind = Literal["link", "conditional-put", "in-process"]

_CONDITIONAL_PUT = frozenset({"s3", "s3a", "gs", "gcs"})
_IN_PROCESS = frozenset({"memory"})
_memory_lock = threading.Lock()  # memory:// is one process's dict: a lock makes its create atomic


class ExclusiveCreateUnsupported(RuntimeError):
    """The storage root's filesystem has no atomic create-if-absent that this pipeline knows."""


def exclusive_kind(storage: Storage) -> ExclusiveKind:
    """How ``create_if_absent`` creates on this root, or ``ExclusiveCreateUnsupported`` saying what to use."""
    if storage.is_local:
        return "link"
    protocols = storage.fs.protocol if isinstance(storage.fs.protocol, tuple) else (storage.fs.protocol,)
    if _CONDITIONAL_PUT.intersection(protocols):
        return "conditional-put"
    if _IN_PROCESS.intersection(protocols):
        return "in-process"
    raise ExclusiveCreateUnsupported(
        f"{storage!r} is on {'/'.join(protocols)}://, where this pipeline knows no atomic create-if-absent, so it "
        "cannot keep two runs of one cell apart; put the storage root on a local or NFS path, s3:// (AWS S3 or "
        "an S3-compatible store that honours If-None-Match) or gs://"
    )


def create_if_absent(storage: Storage, path: str, data: bytes) -> bool:
    """Write ``data`` at ``path`` if nothing is there: True if this call created it, False if it existed.

    A False can also mean a retried request of this very call had already landed (the store retries after
    a timeout, the first attempt succeeded): callers that care put a token in ``data`` and read it back.
    """
    kind = exclusive_kind(storage)
    if kind == "link":
        return _link_into_place(path, data)
    try:
        if kind == "in-process":
            with _memory_lock:
                storage.fs.pipe_file(path, data, mode="create")
        else:
            storage.fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    return True


def verify_exclusive_create(storage: Storage, directory: str) -> None:
    """Check that the store really refuses a second create of one object (an S3-compatible store that
    ignores ``If-None-Match`` would let two runs both win); raises ``ExclusiveCreateUnsupported`` if not.
    Local disk and memory need no probe."""
    if exclusive_kind(storage) != "conditional-put":
        return
    probe = f"{directory}/.probe-{uuid.uuid4().hex}"  # hidden: never listed as a lease
    try:
        if not create_if_absent(storage, probe, b"1"):
            raise ExclusiveCreateUnsupported(f"a fresh probe object {storage.uri(probe)} was reported as existing")
        try:
            second = create_if_absent(storage, probe, b"2")
        except OSError as exc:  # e.g. 501 NotImplemented for the header
            raise ExclusiveCreateUnsupported(
                f"{storage!r} rejects conditional writes ({exc}); use a store that supports If-None-Match"
            ) from exc
        if second:
            raise ExclusiveCreateUnsupported(
                f"{storage!r} overwrote an object despite If-None-Match: *, so it cannot keep two runs of one cell "
                "apart; use AWS S3 or an S3-compatible store with conditional writes (MinIO, R2, Ceph RGW recent)"
            )
    finally:
        with contextlib.suppress(OSError):
            storage.fs.rm_file(probe)


def _link_into_place(path: str, data: bytes) -> bool:
    parent, name = path.rsplit("/", 1)
    os.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{name}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:  # a filesystem without hard links (some FUSE and SMB mounts)
            raise ExclusiveCreateUnsupported(
                f"cannot hard-link in {parent} ({exc}); put the storage root on a filesystem with hard links "
                "(local disk, NFS) or on s3:// / gs://"
            ) from exc
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
