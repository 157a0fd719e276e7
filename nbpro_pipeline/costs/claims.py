"""``billing_claims``: every image that was paid for and is not usable, per provider and month, with what
a reseller needs to check it (task id, when, how much, why, where the evidence is kept).

A task is claimed once, by its latest ledger row, for what its rows add up to (read through
``read_ledger``'s counting, so a task is never claimed twice): a stored image judged blank, a duplicate
of an earlier paid image or a copy of its own reference (``usability``); a paid image kept in
quarantine (corrupt, wrong size or format, over the size cap); a billed answer the client could not
read; a failure the provider reported and still charged (a blocked prompt, say). Failures of our own
making (a download that failed, a deadline, a bug) are not claims: the next run finishes those tasks.
The claims' total equals the ledger's cost of the claimed tasks' rows (``ClaimsReport.reconciles``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from nbpro_pipeline.costs.money import ZERO
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.costs.report_cells import by_provider_order, cost_unit, usd
from nbpro_pipeline.costs.report_parquet import write_report
from nbpro_pipeline.costs.scan import cell_batches
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.presentation.ledger_rows import records
from nbpro_pipeline.providers.registry import PROVIDERS
from nbpro_pipeline.storage.csv_cells import write_csv
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.usability import UNUSABLE

# Failed rows whose paid image or answer is the provider's defect: the reason a claim gives for each.
IMAGE_FAILURES = {
    "corrupt_image": "corrupt_image",
    "size_mismatch": "wrong_size",
    "format_mismatch": "wrong_format",
    "result_too_large": "oversized_answer",
    "result_unreadable": "unreadable_answer",
}
# The engine's own codes: not the provider's word that it failed, so no claim (docs/ledger.md).
OWN_CODES = frozenset(
    {"download_failed", "poll_failed", "deadline_exceeded", "deadline_cancelled", "internal_error", "task_id_unsafe",
     "submit_outcome_unknown", "reference_unreadable", "invalid_request", "idempotency_conflict", "provider_error",
     "unmarkable_image", "budget_exceeded", "insufficient_funds", "auth_failed"}
)  # fmt: skip
FAILED_BUT_CHARGED = "failed_but_charged"


class Claim(BaseModel):
    """One paid, unusable image (or answer): a row of the claims report and of the CSV a team sends."""

    provider: str
    period: str  # YYYY-MM of charged_at (UTC)
    resolution: str
    task_id: str
    prompt_id: str
    charged_at: str  # ISO 8601, UTC: when the provider finished (billed) the task
    amount: Decimal  # what the task's ledger rows add up to, in cost_unit
    cost_unit: str | None = None
    amount_usd: Decimal | None = None
    reason: str  # blank, duplicate, reference_copy, corrupt_image, wrong_size, ..., failed_but_charged
    error_code: str | None = None
    detail: str
    duplicate_of: str | None = None
    evidence: str | None = None  # the stored or quarantined image, or the raw body kept


CLAIM_COLUMNS = list(Claim.model_fields)
TOTAL_COLUMNS = ["provider", "period", "cost_unit", "claims", "amount", "amount_usd", "ledger_cost"]
_READ = ["provider", "resolution", "task_id", "prompt_id", "fingerprint", "status", "error_code", "error_message",
         "final_cost", "recorded_at", "finished_at", "image_uri", "usability", "duplicate_of", "duplicate_distance",
         "image_uniform_share"]  # fmt: skip


@dataclass(frozen=True)
class ClaimsReport:
    """The claims and their totals per provider and month; ``ledger_cost`` is the ledger's own sum over
    every row of the claimed tasks, which the claims' ``amount`` must equal."""

    claims: pd.DataFrame  # CLAIM_COLUMNS
    totals: pd.DataFrame  # TOTAL_COLUMNS

    @property
    def reconciles(self) -> bool:
        return all(a == b for a, b in zip(self.totals["amount"], self.totals["ledger_cost"], strict=True))


def billing_claims(storage: Storage, prices: PriceTable) -> ClaimsReport:
    """The claims of every cell under ``storage``, read a cell at a time (a task lives in one cell)."""
    frames = []
    for provider in sorted(_providers(storage), key=lambda p: (PROVIDERS.order(p), p)):
        for resolution in Resolution:
            rows = pa.concat_tables(list(cell_batches(storage, provider, resolution, _READ)) or [_empty()])
            frames.append(_cell_claims(rows, storage))
    claims = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    if claims is None:
        claims = pd.DataFrame({c: pd.Series([], dtype=object) for c in CLAIM_COLUMNS})
    claims["cost_unit"] = [cost_unit(prices, p) for p in claims["provider"]]
    claims["amount_usd"] = [usd(prices, p, a) if prices.knows(p) else None for p, a in zip(claims["provider"],
                            claims["amount"], strict=True)]  # fmt: skip
    claims = claims[CLAIM_COLUMNS].sort_values(["provider", "period", "charged_at"], kind="stable")
    claims = claims.reset_index(drop=True)
    return ClaimsReport(claims=claims, totals=_totals(claims, prices, storage))


def _providers(storage: Storage) -> list[str]:
    from nbpro_pipeline.storage.compaction import ledger_providers

    return ledger_providers(storage)


def _empty() -> pa.Table:
    from nbpro_pipeline.models.ledger import LEDGER_SCHEMA

    return LEDGER_SCHEMA.empty_table().select(_READ)


def _cell_claims(rows: pa.Table, storage: Storage) -> pd.DataFrame:
    """One cell's claims: the tasks whose latest row is a claim and whose rows cost something."""
    candidate = pc.or_(
        pc.fill_null(pc.equal(rows["status"], OutcomeStatus.FAILED.value), False),
        pc.fill_null(pc.is_in(rows["usability"], value_set=pa.array(sorted(UNUSABLE))), False),
    )
    suspects = pc.unique(rows.filter(pc.and_(candidate, pc.is_valid(rows["task_id"])))["task_id"])
    mine = rows.filter(pc.fill_null(pc.is_in(rows["task_id"], value_set=suspects), False)).to_pandas()
    if mine.empty:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    mine["final_cost"] = [ZERO if v is None else Decimal(v) for v in mine["final_cost"]]
    spent = mine.groupby("task_id")["final_cost"].sum()
    latest = mine.sort_values("recorded_at", kind="stable").drop_duplicates("task_id", keep="last")
    out = [claim for r in records(latest) if (claim := _claim(r, spent[r["task_id"]], storage))]
    return pd.DataFrame([c.model_dump() for c in out], columns=CLAIM_COLUMNS)


def _claim(row: dict[str, Any], amount: Decimal, storage: Storage) -> Claim | None:
    """The claim of a task whose latest row is ``row`` and whose rows cost ``amount``, if it is one."""
    reason = _reason(row)
    if reason is None or amount <= 0:
        return None
    charged = row["finished_at"] or row["recorded_at"]
    return Claim(
        provider=row["provider"],
        period=pd.Timestamp(charged).strftime("%Y-%m"),
        resolution=row["resolution"],
        task_id=row["task_id"],
        prompt_id=row["prompt_id"],
        charged_at=pd.Timestamp(charged).isoformat(),
        amount=amount,
        reason=reason,
        error_code=row["error_code"],
        detail=_detail(row, reason),
        duplicate_of=row["duplicate_of"],
        evidence=row["image_uri"] or _body(row, storage),
    )


def _reason(row: dict[str, Any]) -> str | None:
    if row["status"] == OutcomeStatus.SUCCEEDED.value:
        return row["usability"] if row["usability"] in UNUSABLE else None
    if row["status"] != OutcomeStatus.FAILED.value:
        return None
    code = row["error_code"] or ""
    if code in IMAGE_FAILURES:
        return IMAGE_FAILURES[code]
    return None if code in OWN_CODES else FAILED_BUT_CHARGED


def _detail(row: dict[str, Any], reason: str) -> str:
    if reason == "blank":
        return f"{100 * (row['image_uniform_share'] or 0):.1f}% of sampled pixels are one colour"
    if row["duplicate_of"]:
        return f"perceptual hash {int(row['duplicate_distance'] or 0)} bits from {row['duplicate_of']}"
    return (row["error_message"] or "")[:300]


def _body(row: dict[str, Any], storage: Storage) -> str | None:
    """Where the raw body of an unreadable answer was kept (quarantine/…/<prompt>.<task>-<fp>.body.<ext>)."""
    if row["error_code"] != "result_unreadable":
        return None
    for ext in ("json", "txt", "bin"):
        path = storage.quarantine_body_path(row["provider"], Resolution(row["resolution"]), row["prompt_id"],
                                            row["task_id"], row["fingerprint"], ext)  # fmt: skip
        if storage.exists(path):
            return storage.uri(path)
    return None


def _totals(claims: pd.DataFrame, prices: PriceTable, storage: Storage) -> pd.DataFrame:
    """Per provider and month: the claims, their amount, and the ledger's own cost of the claimed tasks."""
    rows = []
    for (provider, period), group in claims.groupby(["provider", "period"], sort=False):
        amount = sum(group["amount"], ZERO)
        rows.append({"provider": provider, "period": period, "cost_unit": cost_unit(prices, provider),
                     "claims": len(group), "amount": amount,
                     "amount_usd": usd(prices, provider, amount) if prices.knows(provider) else None,
                     "ledger_cost": _ledger_cost(storage, provider, pa.array(sorted(group["task_id"])))})  # fmt: skip
    return pd.DataFrame(rows, columns=TOTAL_COLUMNS)


def _ledger_cost(storage: Storage, provider: str, tasks: pa.Array) -> Decimal:
    """Every ledger row's ``final_cost`` of ``tasks``, summed from a read of its own."""
    total = ZERO
    for batch in _batches_of(storage, provider, ["task_id", "final_cost"]):
        hit = batch.filter(pc.fill_null(pc.is_in(batch["task_id"], value_set=tasks), False))
        total += Decimal(pc.sum(hit["final_cost"]).as_py() or 0)
    return total


def _batches_of(storage: Storage, provider: str, columns: list[str]) -> Iterator[pa.Table]:
    for resolution in Resolution:
        yield from cell_batches(storage, provider, resolution, columns)


def write_claims(report: ClaimsReport, storage: Storage) -> list[str]:
    """``reports/billing_claims.parquet`` (every claim), ``billing_claims_totals.parquet`` and one CSV per
    provider to send it (``reports/billing_claims/<provider>.csv``, formulas neutralised); their URIs."""
    written = []
    for name, df in (("billing_claims", report.claims), ("billing_claims_totals", report.totals)):
        target = storage.uri(storage.path("reports", f"{name}.parquet"))
        written.append(write_report(df, target, storage_options=storage.storage_options or None))
    by_provider = by_provider_order({p: ZERO for p in report.claims["provider"]})
    for provider in by_provider:
        mine = report.claims[report.claims["provider"] == provider]
        path = storage.path("reports", "billing_claims", f"{provider}.csv")
        with storage.open_atomic(path) as fh:
            write_csv(_csv_table(mine), fh)
        written.append(storage.uri(path))
    return written


def _csv_table(claims: pd.DataFrame) -> pa.Table:
    """Every column as text (amounts exactly as the ledger holds them), for a spreadsheet."""
    return pa.table({c: [None if pd.isna(v) else str(v) for v in claims[c]] for c in CLAIM_COLUMNS},
                    schema=pa.schema([(c, pa.string()) for c in CLAIM_COLUMNS]))  # fmt: skip
