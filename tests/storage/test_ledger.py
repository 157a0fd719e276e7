"""LedgerWriter and read_ledger: exact decimals, hive columns restored, filters, immutable parts."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import LEDGER_SCHEMA
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import LedgerWriter, read_ledger
from tests.storage.conftest import ledger_record


def write(storage, records, **kw):
    by_cell: dict = {}
    for r in records:
        by_cell.setdefault((r.provider, r.resolution), []).append(r)
    for (p, res), recs in by_cell.items():
        writer = LedgerWriter(storage, p, res, recs[0].run_id, **kw)
        for r in recs:
            writer.add(r)
        writer.flush()


def test_empty_ledger_is_an_empty_table_with_the_schema(any_storage):
    table = read_ledger(any_storage)
    assert table.num_rows == 0 and table.schema == LEDGER_SCHEMA
    some = read_ledger(any_storage, provider="rivya", columns=["prompt_id", "final_cost"])
    assert some.num_rows == 0 and some.schema.names == ["prompt_id", "final_cost"]


def test_round_trip_keeps_decimals_exact_and_restores_hive_columns(any_storage):
    costs = [Decimal("0.000001"), Decimal("0.15"), Decimal("0.30"), Decimal("123456789.123456"), Decimal("0.1")]
    records = [ledger_record(f"o{i}", provider="odirouter", resolution="4K", cost=c) for i, c in enumerate(costs)]
    records += [ledger_record(f"r{i}", provider="rivya", resolution="2K", cost=8) for i in range(3)]
    write(any_storage, records)
    table = read_ledger(any_storage)
    assert table.num_rows == 8 and table.schema == LEDGER_SCHEMA
    rows = {r["prompt_id"]: r for r in table.to_pylist()}
    for i, c in enumerate(costs):
        row = rows[f"o{i}"]
        assert row["final_cost"] == c and isinstance(row["final_cost"], Decimal)
        assert (row["provider"], row["resolution"]) == ("odirouter", "4K")
    assert {(rows[f"r{i}"]["provider"], rows[f"r{i}"]["resolution"]) for i in range(3)} == {("rivya", "2K")}
    odi = read_ledger(any_storage, provider=Provider.ODIROUTER)
    assert pc.sum(odi["final_cost"]).as_py() == sum(costs)
    assert rows["o0"]["recorded_at"] == records[0].recorded_at
    assert rows["o0"]["task_id"] == records[0].task_id and rows["o0"]["status"] == "succeeded"


def test_filters_by_provider_and_resolution(local_storage):
    records = [
        ledger_record(f"{p.value}-{r.value}-{i}", provider=p, resolution=r, cost=1)
        for p in Provider
        for r in Resolution
        for i in range(2)
    ]
    write(local_storage, records)
    assert read_ledger(local_storage).num_rows == 12
    assert read_ledger(local_storage, provider="rivya").num_rows == 6
    assert read_ledger(local_storage, resolution=Resolution.R4K).num_rows == 4
    cell = read_ledger(local_storage, provider=Provider.ODIROUTER, resolution="2K")
    assert cell.num_rows == 2
    assert set(cell["provider"].to_pylist()) == {"odirouter"} and set(cell["resolution"].to_pylist()) == {"2K"}
    # a plain path works as well as a Storage
    assert read_ledger(local_storage.root, provider="rivya", resolution="1K").num_rows == 2


def test_column_selection_keeps_the_requested_order(local_storage):
    write(local_storage, [ledger_record("a")])
    table = read_ledger(local_storage, columns=["status", "resolution", "prompt_id"])
    assert table.schema.names == ["status", "resolution", "prompt_id"]
    assert table.to_pylist() == [{"status": "succeeded", "resolution": "1K", "prompt_id": "a"}]


def test_flush_rows_writes_parts_as_it_goes(local_storage):
    writer = LedgerWriter(local_storage, Provider.RIVYA, Resolution.R1K, "run-x", flush_rows=3, flush_interval_s=3600)
    for i in range(7):
        writer.add(ledger_record(f"p{i}"))
    assert len(writer.parts) == 2 and writer.written == 6
    assert read_ledger(local_storage).num_rows == 6  # what is flushed is readable already
    writer.flush()
    assert len(writer.parts) == 3 and writer.written == 7
    writer.flush()  # nothing buffered: no empty part
    assert len(writer.parts) == 3
    assert len(set(writer.parts)) == 3
    assert read_ledger(local_storage).num_rows == 7


def test_flush_interval_zero_flushes_every_row(local_storage):
    writer = LedgerWriter(local_storage, Provider.ODIROUTER, Resolution.R2K, "r", flush_rows=1000, flush_interval_s=0)
    for i in range(3):
        writer.add(ledger_record(f"p{i}", provider="odirouter", resolution="2K", cost="0.15"))
    assert len(writer.parts) == 3


def test_two_writers_with_the_same_run_id_never_overwrite_each_other(local_storage):
    for _ in range(2):
        w = LedgerWriter(local_storage, Provider.RIVYA, Resolution.R1K, "same-run")
        w.add(ledger_record("p"))
        w.flush()
    assert read_ledger(local_storage).num_rows == 2


def test_parts_are_hive_partitioned_parquet_readable_by_pyarrow_dataset(local_storage):
    import pyarrow.dataset as ds

    write(local_storage, [ledger_record("a", provider="odirouter", resolution="4K", cost="0.30")])
    dataset = ds.dataset(local_storage.ledger_dir(), format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.column("provider").to_pylist() == ["odirouter"]
    assert str(table.column("resolution").to_pylist()[0]) == "4K"


def test_reader_ignores_hidden_tmp_files(local_storage):
    write(local_storage, [ledger_record("a")])
    cell = local_storage.path("ledger", "provider=rivya", "resolution=1K")
    with open(f"{cell}/.tmp-123-part.parquet", "wb") as fh:
        fh.write(b"not parquet at all")
    assert read_ledger(local_storage).num_rows == 1


@pytest.mark.parametrize("n", [1, 40])
def test_total_of_many_micro_amounts_is_exact(local_storage, n):
    amounts = [Decimal("0.000001") * (i + 1) for i in range(n)]
    write(
        local_storage,
        [ledger_record(f"p{i}", provider="odirouter", cost=a) for i, a in enumerate(amounts)],
        flush_rows=7,
        flush_interval_s=3600,
    )
    table = read_ledger(local_storage, provider="odirouter", columns=["final_cost"])
    assert table.schema.field("final_cost").type == pa.decimal128(18, 6)
    assert sum(table["final_cost"].to_pylist()) == sum(amounts)


def test_an_amount_the_column_cannot_hold_is_refused_at_the_row(local_storage):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="does not fit"):
        ledger_record("absurd", cost=Decimal(10) ** 12)
    assert ledger_record("fine", cost=Decimal("0.1234567")).final_cost == Decimal("0.123457")  # six places


def test_a_failed_flush_loses_no_row(local_storage, monkeypatch):
    writer = LedgerWriter(local_storage, Provider.RIVYA, Resolution.R1K, "run-1", flush_rows=10**6)
    for i in range(3):
        writer.add(ledger_record(f"r{i}"))
    calls = {"n": 0}
    real = local_storage.open_atomic

    def failing_once(path):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        return real(path)

    monkeypatch.setattr(local_storage, "open_atomic", failing_once)
    with pytest.raises(OSError):
        writer.flush()
    writer.add(ledger_record("r3"))
    writer.flush()
    assert sorted(read_ledger(local_storage)["prompt_id"].to_pylist()) == ["r0", "r1", "r2", "r3"]
