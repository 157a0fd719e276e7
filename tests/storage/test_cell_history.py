"""load_cell_history and spent_on: the past a run needs, from the cell's own parts, equal to a full read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from nbpro_pipeline.costs import spent_today_from_ledger
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import LedgerWriter, read_ledger
from nbpro_pipeline.storage.cell_history import load_cell_history, spent_on
from nbpro_pipeline.storage.compaction import compact_ledger
from nbpro_pipeline.storage.ledger_parts import cell_parts, parse_part
from tests.storage.conftest import ledger_record

MIDNIGHT = datetime(2025, 3, 11, 0, 0, tzinfo=UTC)


def _write(storage, records, provider=Provider.RIVYA, resolution=Resolution.R1K):
    writer = LedgerWriter(storage, provider, resolution, "run", flush_rows=10**6, flush_interval_s=10**6)
    for record in records:
        writer.add(record)
    writer.flush()
    return writer


def test_a_part_never_spans_two_utc_days_and_is_named_for_its_day(local_storage):
    records = [ledger_record(f"p{i}", recorded_at=MIDNIGHT + timedelta(minutes=i - 2)) for i in range(4)]
    writer = _write(local_storage, records)
    days = sorted(parse_part(p).first_day.isoformat() for p in writer.parts)
    assert days == ["2025-03-10", "2025-03-11"]
    assert all(parse_part(p).first_day == parse_part(p).last_day for p in writer.parts)


def test_spent_on_equals_the_full_read_for_every_day_and_reads_only_that_days_parts(local_storage):
    rows = []
    for day in range(3):
        for i in range(5):
            at = MIDNIGHT + timedelta(days=day, hours=i * 5, minutes=-30)
            rows.append(ledger_record(f"d{day}-{i}", cost=Decimal("0.000003") * (i + 1), recorded_at=at))
    _write(local_storage, rows)
    _write(local_storage, [ledger_record("o", provider="odirouter", cost="1.5", recorded_at=MIDNIGHT)], "odirouter")
    full = read_ledger(local_storage)
    for day in [(MIDNIGHT + timedelta(days=d)).date() for d in range(-1, 4)]:
        for provider in Provider:
            assert spent_on(local_storage, provider, day) == spent_today_from_ledger(full, provider, day)
    from nbpro_pipeline.storage.cell_history import parts_for_day

    assert len(parts_for_day(local_storage, Provider.RIVYA, MIDNIGHT.date())) == 1
    compact_ledger(local_storage, min_age_s=0)
    assert spent_on(local_storage, Provider.RIVYA, MIDNIGHT.date()) == spent_today_from_ledger(
        full, Provider.RIVYA, MIDNIGHT.date()
    )


def test_history_holds_stored_fingerprints_net_charges_and_latest_codes(local_storage):
    image = local_storage.path("images", "provider=rivya/resolution=1K", "a.png")
    local_storage.write_bytes(image, b"png")
    gone = local_storage.path("images", "provider=rivya/resolution=1K", "gone.png")
    t = MIDNIGHT
    rows = [
        ledger_record(
            "a", fingerprint="fa", task_id="t1", status="failed", error_code="poll_timeout", cost=0, recorded_at=t
        ),
        ledger_record(
            "a",
            fingerprint="fa",
            task_id="t1",
            status="succeeded",
            cost=8,
            image_uri=image,
            recorded_at=t + timedelta(seconds=1),
        ),
        ledger_record(
            "b",
            fingerprint="fb",
            task_id="t2",
            status="failed",
            error_code="content_policy",
            cost=2,
            recorded_at=t + timedelta(seconds=2),
        ),
        ledger_record(
            "c",
            fingerprint="fc",
            task_id="t3",
            status="succeeded",
            cost=8,
            image_uri=gone,
            recorded_at=t + timedelta(seconds=3),
        ),
        ledger_record("d", provider="odirouter", fingerprint="fd", task_id="t9", cost=1),
    ]
    _write(local_storage, rows[:4])
    _write(local_storage, rows[4:], "odirouter")
    history = load_cell_history(local_storage, "rivya", "1K")
    assert history.rows == 4
    assert history.stored(local_storage) == {"fa"}
    assert history.stored(local_storage, ["fb", "fc", "zz"]) == set()
    tasks = history.tasks()
    assert {t: h.charged for t, h in tasks.items()} == {"t1": Decimal(8), "t2": Decimal(2), "t3": Decimal(8)}
    assert {t: h.latest_error_code for t, h in tasks.items()} == {"t1": None, "t2": "content_policy", "t3": None}
    assert tasks["t2"].failed and not tasks["t1"].failed
    assert set(history.tasks(["t2", "nope"])) == {"t2"}
    assert history.failed_tasks() == {"fa": {"t1"}, "fb": {"t2"}}
    assert history.failed_tasks(["fb"]) == {"fb": {"t2"}}
    assert history.succeeded_images(["fa", "fb"]) == {"fa": image}


def test_history_lists_only_its_own_cell(local_storage, monkeypatch):
    _write(local_storage, [ledger_record("x")])
    _write(local_storage, [ledger_record("y", resolution="2K")], resolution=Resolution.R2K)
    listed: list[str] = []
    real = local_storage.find
    monkeypatch.setattr(local_storage, "find", lambda path: listed.append(path) or real(path))
    assert load_cell_history(local_storage, "rivya", "2K").rows == 1
    assert listed == [local_storage.path("ledger", "provider=rivya/resolution=2K")]
    assert len(cell_parts(local_storage, "rivya", "1K")) == 1


def test_an_empty_cell_has_an_empty_history(local_storage):
    history = load_cell_history(local_storage, "odirouter", "4K")
    assert history.rows == 0 and history.parts == 0
    assert history.stored(local_storage) == set() and history.tasks() == {} and history.failed_tasks(["x"]) == {}


def test_task_ids_and_tasks_whose_latest_row_carries_a_code(local_storage):
    t = MIDNIGHT
    rows = [
        ledger_record("a", task_id="t1", status="failed", error_code="poll_failed", recorded_at=t),
        ledger_record("a", task_id="t1", status="succeeded", recorded_at=t + timedelta(seconds=1)),
        ledger_record("b", task_id="t2", status="failed", error_code="poll_failed", recorded_at=t),
        ledger_record("c", task_id="t3", status="failed", error_code="content_policy", recorded_at=t),
    ]
    _write(local_storage, rows)
    history = load_cell_history(local_storage, "rivya", "1K")
    assert history.task_ids() == {"t1", "t2", "t3"}
    assert history.tasks_with_latest_code({"poll_failed", "download_failed"}) == {"t2"}  # t1 succeeded later
