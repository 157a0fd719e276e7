"""The test oracles themselves (``tests/storage/oracles.py``): a full read answers what the ledger holds."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.storage.ledger_parts import cell_parts
from tests.costs.builders import T0, ledger, record
from tests.storage.conftest import ledger_record
from tests.storage.oracles import full_cell_scan, spent_from_full_ledger
from tests.storage.test_day_spend import MIDNIGHT, _write

D = Decimal


def test_a_full_scan_holds_latest_images_net_charges_and_latest_codes(local_storage):
    image = local_storage.path("images", "provider=rivya/resolution=1K", "a.png")
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
        ledger_record("d", provider="odirouter", fingerprint="fd", task_id="t9", cost=1),
    ]
    _write(local_storage, rows[:3])
    _write(local_storage, rows[3:], "odirouter")
    scan = full_cell_scan(local_storage, "rivya", "1K")
    assert scan.rows == 3
    tasks = scan.tasks()
    assert {t: h.charged for t, h in tasks.items()} == {"t1": Decimal(8), "t2": Decimal(2)}
    assert {t: h.latest_error_code for t, h in tasks.items()} == {"t1": None, "t2": "content_policy"}
    assert tasks["t2"].failed and not tasks["t1"].failed
    assert set(scan.tasks(["t2", "nope"])) == {"t2"}
    assert scan.failed_tasks() == {"fa": {"t1"}, "fb": {"t2"}}
    assert scan.failed_tasks(["fb"]) == {"fb": {"t2"}}
    assert scan.succeeded_images(["fa", "fb"]) == {"fa": image}


def test_a_full_scan_lists_only_its_own_cell(local_storage, monkeypatch):
    _write(local_storage, [ledger_record("x")])
    _write(local_storage, [ledger_record("y", resolution="2K")], resolution=Resolution.R2K)
    listed: list[str] = []
    real = local_storage.find
    monkeypatch.setattr(local_storage, "find", lambda path: listed.append(path) or real(path))
    assert full_cell_scan(local_storage, "rivya", "2K").rows == 1
    assert listed == [local_storage.path("ledger", "provider=rivya/resolution=2K")]
    assert len(cell_parts(local_storage, "rivya", "1K")) == 1


def test_an_empty_cell_scans_empty(local_storage):
    scan = full_cell_scan(local_storage, "odirouter", "4K")
    assert scan.rows == 0 and scan.parts == 0
    assert scan.tasks() == {} and scan.failed_tasks(["x"]) == {} and scan.succeeded_images() == {}


def test_spent_from_full_ledger_sums_one_provider_one_utc_day_exactly():
    day = T0.date()
    rows = ledger(
        *[record(f"a{i}", provider="odirouter", resolution="2K") for i in range(7)],
        *[record(f"b{i}", provider="odirouter", resolution="4K") for i in range(3)],
        record("f", provider="odirouter", status="failed", error_code="size_mismatch", cost="0.15"),
        record("y", provider="odirouter", at=T0 - timedelta(days=1)),  # yesterday
        record("r", provider="rivya"),  # other provider
        # finished just before midnight UTC, recorded after: counts on the day it finished
        record("late", provider="odirouter", at=T0.replace(hour=23, minute=59, second=59)),
        record("next", provider="odirouter", at=T0.replace(hour=0) + timedelta(days=1)),
    )
    total = spent_from_full_ledger(rows, "odirouter", day)
    assert total == D("0.15") * 7 + D("0.30") * 3 + D("0.15") + D("0.15")
    assert str(total) == "2.250000"
    assert spent_from_full_ledger(rows, "rivya", day) == 8
    assert spent_from_full_ledger(rows, "rivya", date(2020, 1, 1)) == 0
    assert spent_from_full_ledger(ledger(), "rivya", day) == 0


def test_spent_from_full_ledger_uses_recorded_at_when_finished_at_is_missing():
    rows = ledger(record("s", status="skipped", error_code="budget_exceeded"), record("ok"))
    assert spent_from_full_ledger(rows, "rivya", T0.date()) == 8
