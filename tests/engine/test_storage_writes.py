"""Ledger and journal writes to object storage happen off the event loop: a slow store must not stall
every task in flight."""

from __future__ import annotations

import threading
import uuid

from nbpro_pipeline.storage import LedgerWriter, Storage
from tests.engine.conftest import prompt_rows
from tests.engine.fakeco import FakeCoServer
from tests.engine.test_fake_provider import ledger_rows, run


async def test_ledger_and_journal_writes_leave_the_loop_thread(monkeypatch):
    storage = Storage(f"memory://writes-{uuid.uuid4().hex}")
    loop_thread = threading.get_ident()
    writes: list[tuple[str, bool]] = []
    real_flush, real_write = LedgerWriter.flush, Storage.write_bytes

    def flush(self):
        writes.append(("ledger", threading.get_ident() == loop_thread))
        return real_flush(self)

    def write_bytes(self, path, data):
        if "/journal/" in path:
            writes.append(("journal", threading.get_ident() == loop_thread))
        return real_write(self, path, data)

    monkeypatch.setattr(LedgerWriter, "flush", flush)
    monkeypatch.setattr(Storage, "write_bytes", write_bytes)
    result = await run(storage, FakeCoServer(), prompt_rows(6), "run-1")
    assert result.report.succeeded == 6 and len(ledger_rows(storage)) == 6
    kinds = {kind for kind, _ in writes}
    assert kinds == {"ledger", "journal"}
    assert not [w for w in writes if w[1]], writes  # none on the loop's thread
