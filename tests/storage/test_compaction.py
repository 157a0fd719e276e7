"""Ledger compaction: every row exactly once, whatever is killed when, with writers running alongside."""

from __future__ import annotations

import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import LedgerWriter, Storage, read_ledger
from nbpro_pipeline.storage.compaction import compact_ledger
from nbpro_pipeline.storage.ledger_parts import REPLACES_KEY, cell_parts
from tests.storage.conftest import ledger_record

REPO = str(Path(__file__).resolve().parents[2])


def write_parts(storage: Storage, n_parts: int, rows: int = 3, **kw) -> list:
    records = []
    for i in range(n_parts):
        writer = LedgerWriter(storage, Provider.RIVYA, Resolution.R1K, f"run-{i}", flush_rows=10**6)
        for j in range(rows):
            record = ledger_record(f"p{i}-{j}", cost=Decimal("0.000001") * (i + j + 1), run_id=f"run-{i}", **kw)
            writer.add(record)
            records.append(record)
        writer.flush()
    return records


def multiset(storage: Storage) -> list:
    return sorted(map(repr, read_ledger(storage).to_pylist()))


def expected(records) -> list:
    from nbpro_pipeline.models.ledger import records_to_table

    return sorted(map(repr, records_to_table(records).to_pylist()))


def test_compaction_merges_parts_into_one_keeping_every_row_and_the_total(any_storage):
    records = write_parts(any_storage, 12)
    before = multiset(any_storage)
    result = compact_ledger(any_storage, min_age_s=0)
    parts = cell_parts(any_storage, Provider.RIVYA, Resolution.R1K)
    assert [p.compacted for p in parts] == [True]
    assert result.sources == 12 and result.rows == 36 and result.written == 1
    assert multiset(any_storage) == before == expected(records)
    files = [p for p in any_storage.find(any_storage.ledger_dir()) if p.endswith(".parquet")]
    assert len(files) == 1  # the sources are gone, not only hidden


def test_a_second_compaction_merges_the_compacted_part_with_new_parts(local_storage):
    records = write_parts(local_storage, 4)
    compact_ledger(local_storage, min_age_s=0)
    records += write_parts(local_storage, 3, rows=2)
    compact_ledger(local_storage, min_age_s=0)
    (part,) = cell_parts(local_storage, Provider.RIVYA, Resolution.R1K)
    replaced = pq.read_metadata(part.path).metadata[REPLACES_KEY]
    assert replaced.count(b"part-") == 4 + 1 + 3  # the first compacted part and, through it, its sources
    assert multiset(local_storage) == expected(records)


def test_young_parts_are_left_for_incremental_loaders(local_storage):
    write_parts(local_storage, 3)  # rows of 2025: old
    from datetime import UTC, datetime

    young = write_parts(local_storage, 2, recorded_at=datetime.now(UTC))
    compact_ledger(local_storage, min_age_s=3600)
    parts = cell_parts(local_storage, Provider.RIVYA, Resolution.R1K)
    assert sum(p.compacted for p in parts) == 1 and sum(not p.compacted for p in parts) == len(young) // 3


def test_a_held_lock_skips_the_cell_and_a_stale_one_is_broken(local_storage):
    write_parts(local_storage, 3)
    lock = f"{local_storage.path('ledger', 'provider=rivya/resolution=1K')}/_compaction.lock"
    local_storage.write_bytes(lock, b"someone 2999-01-01T00:00:00+00:00")
    result = compact_ledger(local_storage, provider="rivya", resolution="1K", min_age_s=0)
    assert result.cells[0].busy and result.written == 0
    local_storage.write_bytes(lock, b"someone 2000-01-01T00:00:00+00:00")
    result = compact_ledger(local_storage, provider="rivya", resolution="1K", min_age_s=0)
    assert not result.cells[0].busy and result.written == 1


def _kill_and_check(storage: Storage, root: str, point: str) -> None:
    records = write_parts(storage, 6)
    child = subprocess.run(
        [sys.executable, "-m", "tests.storage.compact_child", root, point], cwd=REPO, capture_output=True, timeout=120
    )
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    assert multiset(storage) == expected(records)  # readers see every row once right after the kill
    result = compact_ledger(storage, min_age_s=0, lock_ttl_s=0)  # the killed one's lock is stale
    assert multiset(storage) == expected(records)
    assert [p.compacted for p in cell_parts(storage, Provider.RIVYA, Resolution.R1K)] == [True]
    assert result.rows in (0, len(records))


@pytest.mark.external
@pytest.mark.parametrize("point", ["mid_write", "after_commit", "mid_delete"])
def test_a_kill_mid_compaction_neither_loses_nor_duplicates_a_row(tmp_path, point):
    root = str(tmp_path / "root")
    _kill_and_check(Storage(root), root, point)


def test_compaction_beside_a_running_writer_keeps_every_row_once(local_storage):
    records: list = []
    done = threading.Event()

    def writer() -> None:
        w = LedgerWriter(local_storage, Provider.RIVYA, Resolution.R1K, "live", flush_rows=2)
        for i in range(200):
            record = ledger_record(f"live-{i}", run_id="live")
            w.add(record)
            records.append(record)
        w.flush()
        done.set()

    records_before = write_parts(local_storage, 5)
    thread = threading.Thread(target=writer)
    thread.start()
    rounds = 0
    while not done.is_set() or rounds < 2:
        compact_ledger(local_storage, min_age_s=0)
        rounds += 1
    thread.join()
    compact_ledger(local_storage, min_age_s=0)
    assert multiset(local_storage) == expected(records_before + records)
    assert rounds >= 2


def test_the_cli_compacts_and_says_what_it_did(local_storage):
    import json

    from click.testing import CliRunner

    from nbpro_pipeline.cli import main

    records = write_parts(local_storage, 4)
    out = CliRunner().invoke(main, ["compact-ledger", local_storage.root, "--min-age", "0", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["sources"] == 4 and data["rows"] == len(records)
    assert multiset(local_storage) == expected(records)
    text = CliRunner().invoke(main, ["compact-ledger", local_storage.root, "--provider", "rivya"])
    assert text.exit_code == 0 and "compacted 0 part(s)" in text.output
