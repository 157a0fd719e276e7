"""The storage root's ledger id: written once, atomically, read ever after; a damaged one is refused."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from nbpro_pipeline.storage import Storage, ledger_id
from nbpro_pipeline.storage.ledger_id import LedgerIdError


def test_the_id_is_created_once_and_read_thereafter(tmp_path):
    storage = Storage(tmp_path / "root")
    first = ledger_id(storage)
    assert len(first) == 32 and ledger_id(storage) == first
    assert ledger_id(Storage(tmp_path / "root")) == first  # another process, the same root
    assert (tmp_path / "root" / "ledger_id").read_text().strip() == first
    assert ledger_id(Storage(tmp_path / "other")) != first


def test_concurrent_first_writers_agree_on_one_id(tmp_path):
    roots = [Storage(tmp_path / "root") for _ in range(16)]
    with ThreadPoolExecutor(16) as pool:
        ids = set(pool.map(ledger_id, roots))
    assert len(ids) == 1
    assert [p.name for p in (tmp_path / "root").iterdir()] == ["ledger_id"]  # no temp file left behind


def test_an_object_store_root_gets_one_too():
    storage = Storage(f"memory://ledger-id-{uuid.uuid4().hex}")
    assert ledger_id(storage) == ledger_id(storage)


def test_a_damaged_id_is_refused_with_what_to_do(tmp_path):
    storage = Storage(tmp_path / "root")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "ledger_id").write_text("not an id\n")
    with pytest.raises(LedgerIdError, match="restore it from a backup"):
        ledger_id(storage)
