"""spent_on: a provider's spend on a UTC day, from that day's parts only, equal to a full read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import LedgerWriter, read_ledger
from nbpro_pipeline.storage.compaction import compact_ledger
from nbpro_pipeline.storage.day_spend import parts_for_day, spent_on
from nbpro_pipeline.storage.ledger_parts import parse_part
from tests.storage.conftest import ledger_record
from tests.storage.oracles import spent_from_full_ledger

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
            assert spent_on(local_storage, provider, day) == spent_from_full_ledger(full, provider, day)
    assert len(parts_for_day(local_storage, Provider.RIVYA, MIDNIGHT.date())) == 1
    compact_ledger(local_storage, min_age_s=0)
    assert spent_on(local_storage, Provider.RIVYA, MIDNIGHT.date()) == spent_from_full_ledger(
        full, Provider.RIVYA, MIDNIGHT.date()
    )
