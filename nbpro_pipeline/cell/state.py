"""What a (provider, resolution) cell holds now, read from the ledger, and what one run changed.

A run's report says what that run did; after a no-op re-run (every nightly tick over a complete cell)
that is "0 images, 0 cost", which is true of the run and false of the cell. The UI shows both: the
cell's state (latest outcome per fingerprint, every credit ever spent) and this run's delta.
"""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.engine.report import CellReport
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.presentation.ledger_rows import ImageRef, records

_COLUMNS = [
    "prompt_id",
    "fingerprint",
    "status",
    "error_code",
    "error_message",
    "final_cost",
    "image_uri",
    "width",
    "height",
    "latency_s",
    "recorded_at",
    "run_id",
]
MESSAGE_CHARS = 160


def usd_round(amount: Decimal) -> float:
    """USD for metadata: four places (a tenth of a cent), as a float so the UI plots it."""
    return float(round(amount, 4))


def native_round(amount: Decimal, unit: str) -> float:
    """Credits are whole numbers in practice; keep two places for a fractional refund."""
    return float(round(amount, 2 if unit == "credits" else 4))


class FailedPrompt(BaseModel):
    """A prompt whose latest outcome in the cell is not a stored image."""

    prompt_id: str
    status: OutcomeStatus
    error_code: str
    message: str
    cost: Decimal  # in the cell's unit, every attempt of this fingerprint
    quarantined_uri: str | None = None  # a paid-for image kept aside (size or format mismatch)


class CellState(BaseModel):
    """The cell as the ledger has it now: the latest outcome of each fingerprint, and every row's cost."""

    provider: str
    resolution: Resolution
    images_total: int
    cost_total: Decimal  # native unit, every ledger row of the cell
    cost_usd_total: Decimal
    cost_unit: str
    usd_basis: str  # where the USD figures come from: a configured rate over credits, a price table, or the provider
    outstanding: list[FailedPrompt]
    images: list[ImageRef]  # latest succeeded rows, table order
    quarantined: list[ImageRef]  # every quarantined image of the cell, newest first

    @property
    def cell(self) -> str:
        return f"{self.provider}|{self.resolution.value}"

    @property
    def failures_outstanding(self) -> int:
        return sum(1 for f in self.outstanding if f.status is OutcomeStatus.FAILED)

    @property
    def skipped_outstanding(self) -> int:
        return sum(1 for f in self.outstanding if f.status is OutcomeStatus.SKIPPED)


def usd_basis(provider: str, prices: PriceTable) -> str:
    """Where a cell's USD figures come from: a configured rate over the provider's unit, or its price table."""
    unit = prices.unit(provider)
    if unit != "usd":
        rate = prices.to_usd(provider, Decimal(1)).normalize()
        return f"estimate: {unit} x {rate:f} USD/{unit.rstrip('s')} (configured rate)"
    if prices.is_estimate(provider):
        return "estimate: the provider reports no per-task cost; USD from the configured price table"
    return "as the provider reported it"


def _frame(cell_ledger: pa.Table) -> pd.DataFrame:
    df = cell_ledger.select(_COLUMNS).to_pandas()
    df["final_cost"] = df["final_cost"].map(lambda v: Decimal(0) if v is None else Decimal(v))
    return df.sort_values("recorded_at", kind="stable").reset_index(drop=True)


def _ref(row: dict) -> ImageRef:
    return ImageRef(
        prompt_id=row["prompt_id"],
        uri=row["image_uri"],
        width=None if row["width"] is None else int(row["width"]),
        height=None if row["height"] is None else int(row["height"]),
        error_code=row["error_code"],
        latency_s=None if row["latency_s"] is None else round(float(row["latency_s"]), 2),
        cost=row["final_cost"],
    )


def _failed(row: dict, cost: Decimal) -> FailedPrompt:
    """A failed or skipped row as the UI names it; a failed row's image is a quarantined one."""
    return FailedPrompt(
        prompt_id=row["prompt_id"],
        status=OutcomeStatus(row["status"]),
        error_code=row["error_code"] or "unknown",
        message=(row["error_message"] or "")[:MESSAGE_CHARS],
        cost=cost,
        quarantined_uri=row["image_uri"] if row["status"] == OutcomeStatus.FAILED.value else None,
    )


def cell_state(cell_ledger: pa.Table, provider: str, resolution: Resolution, prices: PriceTable) -> CellState:
    """The state of one cell from its ledger rows (``CellLedger.table``, or any table of its rows)."""
    unit = prices.unit(provider)
    df = _frame(cell_ledger)
    total = sum(df["final_cost"], Decimal(0))
    cost_by_fp = df.groupby("fingerprint")["final_cost"].sum() if len(df) else pd.Series(dtype=object)
    latest = df.drop_duplicates("fingerprint", keep="last")
    ok = latest[latest["status"] == OutcomeStatus.SUCCEEDED.value]
    shown = ok[ok["image_uri"].notna()]
    bad = latest[latest["status"] != OutcomeStatus.SUCCEEDED.value]
    outstanding = [_failed(r, cost_by_fp.get(r["fingerprint"], Decimal(0))) for r in records(bad)]
    quarantined = df[(df["status"] == OutcomeStatus.FAILED.value) & df["image_uri"].notna()]
    return CellState(
        provider=provider,
        resolution=resolution,
        images_total=len(ok),
        cost_total=total,
        cost_usd_total=prices.to_usd(provider, total),
        cost_unit=unit,
        usd_basis=usd_basis(provider, prices),
        outstanding=outstanding,
        images=[_ref(r) for r in records(shown.sort_values("prompt_id", kind="stable"))],
        quarantined=[_ref(r) for r in records(quarantined.iloc[::-1])],
    )


def run_failures(cell_ledger: pa.Table, run_id: str) -> list[FailedPrompt]:
    """The failed and skipped rows this run wrote, for one WARNING line each."""
    df = _frame(cell_ledger)
    mine = df[(df["run_id"] == run_id) & (df["status"] != OutcomeStatus.SUCCEEDED.value)]
    return [_failed(r, r["final_cost"]) for r in records(mine)]


class RunDelta(BaseModel):
    """What this run changed, from its report."""

    images: int
    failed: int
    skipped: int
    already_done: int
    submitted: int
    resumed: int
    cost: Decimal
    cost_usd: Decimal

    @property
    def is_noop(self) -> bool:
        return self.submitted == 0 and self.resumed == 0 and self.images == 0 and self.failed == 0

    def describe(self, eligible: int) -> str:
        if self.is_noop:
            return f"no-op: all {self.already_done} of {eligible} eligible prompts were already done; nothing paid"
        return (
            f"{self.images} new images, {self.failed} failed, {self.skipped} skipped, "
            f"{self.already_done} already done of {eligible} eligible"
        )


def run_delta(report: CellReport, prices: PriceTable) -> RunDelta:
    return RunDelta(
        images=report.succeeded,
        failed=report.failed,
        skipped=report.skipped,
        already_done=report.already_done,
        submitted=report.submitted,
        resumed=report.resumed,
        cost=report.final_cost,
        cost_usd=prices.to_usd(report.provider, report.final_cost),
    )
