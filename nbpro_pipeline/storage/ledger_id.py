"""The storage root's ledger id: a stable random id written once into ``<root>/ledger_id``.

Idempotency keys include it, so two storage roots on one provider account (a laptop and the
production bucket, two teams) never get each other's tasks replayed and never both book one task,
while every run on the same root keeps the same keys (a crash-resume still replays its own task).
"""

from __future__ import annotations

import os
import re
import uuid

from nbpro_pipeline.storage.filesystem import Storage

LEDGER_ID_FILE = "ledger_id"
_ID = re.compile(r"^[0-9a-f]{32}$")


class LedgerIdError(ValueError):
    """The ledger id file exists but does not hold an id: fix or delete it (deleting changes every key)."""


def ledger_id(storage: Storage) -> str:
    """The root's ledger id, created atomically if absent (the first writer wins; everyone reads it)."""
    path = storage.path(LEDGER_ID_FILE)
    if not storage.exists(path):
        _create(storage, path, uuid.uuid4().hex)
    value = storage.read_bytes(path).decode("ascii", "replace").strip()
    if not _ID.match(value):
        raise LedgerIdError(
            f"{storage.uri(path)} holds {value[:40]!r}, not a 32-hex-digit ledger id; restore it from a backup "
            "(deleting it gives this root new idempotency keys, so crash-resumed tasks would be paid again)"
        )
    return value


def _create(storage: Storage, path: str, value: str) -> None:
    data = (value + "\n").encode()
    if storage.is_local:
        # write a temp file, then link it into place: link fails if another writer got there first
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        return
    try:
        with storage.fs.open(path, "xb") as fh:  # conditional create where the store supports it
            fh.write(data)
    except FileExistsError:
        pass
    except (NotImplementedError, ValueError, TypeError):
        storage.write_bytes(path, data)  # no conditional create: last writer wins, all read the result
