"""billing_claims: each paid, unusable image or answer claimed once, by its task's latest row, for what
its rows add up to; our own failures and refunded ones are not claims; the CSV is formula-safe; the
totals equal the ledger's cost of the claimed tasks; a ledger written before the usability columns
existed still reads."""

from __future__ import annotations

import csv
from datetime import timedelta
from decimal import Decimal

import pyarrow.parquet as pq

from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.costs.claims import billing_claims, write_claims
from nbpro_pipeline.storage import LedgerWriter, Storage, read_ledger
from tests.costs.builders import T0, record


def write(storage: Storage, *records) -> None:
    for rec in records:
        writer = LedgerWriter(storage, rec.provider, rec.resolution, rec.run_id)
        writer.add(rec)
        writer.flush()


def rows():
    later = T0 + timedelta(days=40)
    return [
        record("ok", task_id="t-ok", usability="usable"),
        record("blank", task_id="t-blank", usability="blank", image_uniform_share=0.999, image_uri="/s/blank.png"),
        record("dup", task_id="t-dup", usability="duplicate", duplicate_of="t-ok", duplicate_distance=1),
        record("size", task_id="t-size", status="failed", error_code="size_mismatch", cost=8, image_uri="/q/s.png"),
        record(
            "blocked",
            provider="odirouter",
            task_id="t-blk",
            status="failed",
            error_code="CONTENT_BLOCKED",
            cost="0.15",
            error_message='=HYPERLINK("x")',
        ),  # fmt: skip
        record("refunded", task_id="t-ref", status="failed", error_code="generation_failed"),  # 0: refunded
        record("ours", task_id="t-dl", status="failed", error_code="download_failed", cost=8),  # resumed next run
        # an unreadable answer (booked at its price), read by a later run: the image is usable, no claim
        record("late", task_id="t-late", status="failed", error_code="result_unreadable", cost=8),
        record("late", task_id="t-late", usability="usable", cost=0, at=later),
        # a held row then its settlement in the next month: one claim for the total
        record("held", task_id="t-held", status="failed", error_code="result_unreadable", cost=8),
        record("held", task_id="t-held", status="failed", error_code="corrupt_image", cost=0, at=later),
        record("=cmd", task_id="+t-evil", usability="blank", image_uniform_share=1.0),
    ]


def test_claims_are_the_paid_unusable_tasks_once_each_and_reconcile(tmp_path):
    storage = Storage(tmp_path)
    write(storage, *rows())
    report = billing_claims(storage, PriceTable())
    claims = report.claims.set_index("task_id")
    assert set(claims.index) == {"t-blank", "t-dup", "t-size", "t-blk", "t-held", "+t-evil"}
    assert claims.loc["t-blank", "reason"] == "blank" and "99.9%" in claims.loc["t-blank", "detail"]
    assert (claims.loc["t-dup", "reason"], claims.loc["t-dup", "duplicate_of"]) == ("duplicate", "t-ok")
    assert claims.loc["t-size", ["reason", "evidence"]].tolist() == ["wrong_size", "/q/s.png"]
    assert claims.loc["t-blk", ["reason", "error_code"]].tolist() == ["failed_but_charged", "CONTENT_BLOCKED"]
    assert claims.loc["t-held", ["reason", "amount"]].tolist() == ["corrupt_image", Decimal(8)]
    assert report.reconciles
    ledger = read_ledger(storage).to_pandas()
    for provider, total in report.totals.groupby("provider")["amount"].sum().items():
        mine = ledger[(ledger["provider"] == provider) & ledger["task_id"].isin(claims.index)]
        assert total == sum(mine["final_cost"], Decimal(0))
    assert report.totals.set_index("provider").loc["odirouter", "amount_usd"] == Decimal("0.15")


def test_the_csv_per_provider_is_formula_safe_and_the_parquet_holds_every_claim(tmp_path):
    storage = Storage(tmp_path)
    write(storage, *rows())
    written = write_claims(billing_claims(storage, PriceTable()), storage)
    assert pq.read_table(written[0]).num_rows == 6
    with open(storage.path("reports", "billing_claims", "rivya.csv"), newline="") as fh:
        rivya = list(csv.DictReader(fh))
    with open(storage.path("reports", "billing_claims", "odirouter.csv"), newline="") as fh:
        odirouter = list(csv.DictReader(fh))
    evil = next(r for r in rivya if "evil" in r["task_id"])
    assert (evil["task_id"], evil["prompt_id"]) == ("'+t-evil", "'=cmd")
    assert odirouter[0]["detail"].startswith("'=") and odirouter[0]["amount"] == "0.150000"


def test_a_ledger_without_the_usability_columns_still_reads(tmp_path):
    storage = Storage(tmp_path)
    old = record("old", task_id="t-old", status="failed", error_code="corrupt_image", cost=8)
    writer = LedgerWriter(storage, old.provider, old.resolution, "run-old")
    writer.add(old)
    writer.flush()
    part = writer.parts[0]  # rewritten as an older version wrote it: without the usability columns
    kept = pq.read_table(part)
    pq.write_table(kept.drop_columns([c for c in kept.column_names if c.startswith(("image_p", "image_c",
                   "image_u", "usability", "duplicate", "answer", "drafts"))]), part)  # fmt: skip
    claims = billing_claims(storage, PriceTable()).claims
    assert claims["task_id"].tolist() == ["t-old"]
