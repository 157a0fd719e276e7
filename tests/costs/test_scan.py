"""``costs.scan``: a cell's rows in batches, the same rows and order as ``read_ledger``, whatever the parts."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nbpro_pipeline.costs.scan import cell_batches, count_rows, ledger_batches
from nbpro_pipeline.models.ledger import LEDGER_SCHEMA
from nbpro_pipeline.storage import LedgerWriter, Storage, compact_ledger, read_ledger
from tests.costs.builders import T0, record

COLUMNS = ["provider", "resolution", "prompt_id", "status", "final_cost", "recorded_at"]


def _write(storage: Storage, n: int, *, flush_rows: int = 7) -> None:
    from datetime import timedelta

    writer = LedgerWriter(storage, "rivya", "2K", "run", flush_rows=flush_rows)
    for i in range(n):
        writer.add(record(f"p{i}", cost=str(i % 5), at=T0 + timedelta(minutes=i)))
    writer.flush()


def _joined(batches) -> pa.Table:
    return pa.concat_tables(list(batches))


def test_batches_hold_the_rows_of_read_ledger_in_its_order(tmp_path):
    storage = Storage(tmp_path / "root")
    _write(storage, 100)
    want = read_ledger(storage, provider="rivya", resolution="2K", columns=COLUMNS)
    batches = list(cell_batches(storage, "rivya", "2K", COLUMNS, rows=30))
    assert [b.num_rows for b in batches][:-1] and all(b.num_rows >= 30 for b in batches[:-1])
    assert _joined(batches).equals(want)
    assert _joined(batches).schema == pa.schema([LEDGER_SCHEMA.field(c) for c in COLUMNS])
    compact_ledger(storage, min_age_s=0)
    assert (
        _joined(cell_batches(storage, "rivya", "2K", COLUMNS, rows=30))
        .sort_by("prompt_id")
        .equals(want.sort_by("prompt_id"))
    )
    assert list(cell_batches(storage, "odirouter", "2K", COLUMNS)) == []


def test_a_filter_keeps_only_its_rows_and_the_footers_count_every_row(tmp_path):
    storage = Storage(tmp_path / "root")
    _write(storage, 40)
    kept = _joined(cell_batches(storage, "rivya", "2K", COLUMNS, where=lambda t: pc.equal(t["final_cost"], 0)))
    assert kept["prompt_id"].to_pylist() == [f"p{i}" for i in range(0, 40, 5)]
    assert count_rows(storage) == 40
    assert count_rows(storage, skip={("rivya", "2K")}) == 0
    assert count_rows(Storage(tmp_path / "none")) == 0
    assert _joined(ledger_batches(storage, ["provider", "final_cost"])).num_rows == 40


def test_parts_of_an_older_version_lacking_columns_read_as_nulls(tmp_path):
    storage = Storage(tmp_path / "root")
    cell = tmp_path / "root" / "ledger" / "provider=rivya" / "resolution=2K"
    cell.mkdir(parents=True)
    pq.write_table(pa.table({"prompt_id": ["old"], "status": ["succeeded"]}), cell / "part-0.parquet")
    (table,) = cell_batches(storage, "rivya", "2K", COLUMNS)
    assert table.to_pylist() == [
        {
            "provider": "rivya",
            "resolution": "2K",
            "prompt_id": "old",
            "status": "succeeded",
            "final_cost": None,
            "recorded_at": None,
        }
    ]
