"""Each task counted once by every reader, whatever wrote its rows: one writer's chain of net bookings,
two writers that booked the same task without seeing each other, rows of a version without totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pyarrow.compute as pc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbpro_pipeline.costs.scan import cell_batches, ledger_batches
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import LedgerWriter, Storage, read_ledger
from nbpro_pipeline.storage.once import counted_once
from tests.storage.conftest import ledger_record

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
PRICE = Decimal(8)


def chain(task: str, totals: list[Decimal], *, writer: str, start: int, known: Decimal = Decimal(0)) -> list:
    """The rows one writer books for ``task``: each row's net is its total minus what that writer knew."""
    rows = []
    for i, total in enumerate(totals):
        rows.append(
            ledger_record(
                f"p-{task}",
                cost=total - known,
                run_id=writer,
                task_id=task,
                task_total=total,
                estimated_usd=(total - known) * Decimal("0.0168"),
                recorded_at=T0 + timedelta(seconds=start + i),
            )
        )
        known = total
    return rows


def write(storage: Storage, rows: list) -> None:
    writer = LedgerWriter(storage, Provider.RIVYA, Resolution.R1K, "w")
    for row in rows:
        writer.add(row)
    writer.flush()


def per_task(table) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for row in table.select(["task_id", "final_cost"]).to_pylist():
        out[row["task_id"]] = out.get(row["task_id"], Decimal(0)) + row["final_cost"]
    return out


def test_a_task_booked_by_two_writers_counts_once_in_every_reader(local_storage):
    first = chain("t1", [PRICE, PRICE], writer="run-a", start=0)  # held, then succeeded (net 0)
    second = chain("t1", [PRICE], writer="run-b", start=1)  # overlapping run: books it in full again
    clean = chain("t2", [PRICE, Decimal(0)], writer="run-a", start=5)  # held, then refunded
    write(local_storage, first + second + clean)
    raw = sum(r.final_cost for r in first + second + clean)
    assert raw == 2 * PRICE  # what the rows hold: t1 twice
    table = read_ledger(local_storage)
    assert per_task(table) == {"t1": PRICE, "t2": 0} and table.num_rows == 5
    assert pc.sum(table["estimated_usd"]).as_py() == PRICE * Decimal("0.0168")
    streamed = [b for b in cell_batches(local_storage, "rivya", "1K", ["prompt_id", "final_cost"], rows=2)]
    assert sum(pc.sum(b["final_cost"]).as_py() for b in streamed) == PRICE
    assert all(b.column_names == ["prompt_id", "final_cost"] for b in streamed)
    everything = list(ledger_batches(local_storage, ["final_cost"]))
    assert sum(pc.sum(b["final_cost"]).as_py() for b in everything) == PRICE


def test_a_consistent_ledger_and_rows_without_totals_come_back_unchanged(local_storage):
    rows = chain("t1", [PRICE, PRICE, Decimal(0)], writer="run-a", start=0)
    legacy = [
        ledger_record("old", cost=PRICE, task_id="t9", recorded_at=T0),
        ledger_record("old", cost=0, task_id="t9"),
    ]
    write(local_storage, rows + legacy)
    table = read_ledger(local_storage)
    assert sorted(table["final_cost"].to_pylist()) == sorted(r.final_cost for r in rows + legacy)
    assert counted_once(table).equals(table)  # applying it again changes nothing


@st.composite
def histories(draw):
    """Per task: a true sequence of totals the provider's answers went through, and 1-3 writers each
    booking a suffix of it without knowing the others (the overlap the lease now refuses)."""
    tasks = []
    for t in range(draw(st.integers(1, 6))):
        totals = draw(st.lists(st.sampled_from([Decimal(0), PRICE, Decimal(6)]), min_size=1, max_size=4))
        writers = [draw(st.integers(0, len(totals) - 1)) for _ in range(draw(st.integers(1, 3)))]
        tasks.append((f"t{t}", totals, writers))
    return tasks


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories())
def test_every_reader_counts_each_task_at_its_latest_total(tmp_path_factory, history):
    storage = Storage(tmp_path_factory.mktemp("once"))
    rows, latest = [], {}
    clock = 0
    for task, totals, writers in history:
        for w, begin in enumerate(writers):
            rows += chain(task, totals[begin:], writer=f"run-{w}", start=clock)
            clock += len(totals) + 1
        latest[task] = totals[-1]  # every writer ends at the task's last total; the last writer's row is latest
    write(storage, rows)
    assert per_task(read_ledger(storage)) == latest
    streamed = sum(pc.sum(b["final_cost"]).as_py() or 0 for b in cell_batches(storage, "rivya", "1K", ["final_cost"]))
    assert streamed == sum(latest.values())


def test_the_focus_export_counts_a_twice_booked_task_once(local_storage):
    from nbpro_pipeline.costs.focus import export_focus

    write(local_storage, chain("t1", [PRICE], writer="run-a", start=0) + chain("t1", [PRICE], writer="run-b", start=1))
    exported = export_focus(local_storage)
    assert exported.rows == 2 and exported.priced == {"Rivya": PRICE}
