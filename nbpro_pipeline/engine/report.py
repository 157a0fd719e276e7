"""What one cell run did: counts, money and a few images to show, as plain data for metadata."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from pydantic import BaseModel, Field

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import CostUnit


class StoredImage(BaseModel):
    prompt_id: str
    uri: str
    width: int
    height: int
    bytes: int


class CellReport(BaseModel):
    provider: str  # the provider's traits name
    resolution: Resolution
    partition_key: str
    eligible: int = 0
    already_done: int = 0  # succeeded in an earlier run: skipped, nothing paid
    resumed: int = 0  # tasks of earlier runs polled again instead of resubmitted
    replayed: int = 0  # submits the provider answered with a task it already had (idempotency key)
    submitted: int = 0
    create_429: int = 0  # creates refused with 429 (provider full) that the admission resent: never charged
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0  # never submitted (budget, funds, auth)
    failures_by_reason: dict[str, int] = Field(default_factory=dict)
    final_cost: Decimal = Decimal(0)
    cost_unit: CostUnit
    cost_is_estimate: bool
    estimated_usd: Decimal = Decimal(0)
    credits_reserved: int = 0
    polls: int = 0
    wall_s: float = 0.0
    stop_reason: str | None = None  # why submitting stopped early, if it did
    images: list[StoredImage] = Field(default_factory=list)  # the first few, for a contact sheet
    image_dir: str = ""
    ledger_parts: int = 0
    journal_segments: int = 0
    references_uploaded: int = 0  # reference images sent to the provider's files API by this run
    references_reused: int = 0  # uploads found in this run or the storage root's cache instead
    client_counters: dict[str, int] = Field(default_factory=dict)
    # submit sent -> task id durable, for a provider without idempotent submits
    submit_window_ms_max: float | None = None

    @property
    def accounted(self) -> int:
        return self.already_done + self.succeeded + self.failed + self.skipped

    @property
    def cost_per_image(self) -> Decimal | None:
        return (self.final_cost / self.succeeded) if self.succeeded else None

    def count_failure(self, code: str) -> None:
        counts = Counter(self.failures_by_reason)
        counts[code] += 1
        self.failures_by_reason = dict(counts)

    def summary(self) -> str:
        per = f", {self.cost_per_image:.4f} {self.cost_unit}/image" if self.succeeded else ""
        est = " (estimate)" if self.cost_is_estimate else ""
        return (
            f"{self.partition_key}: {self.succeeded} images, {self.failed} failed, {self.skipped} skipped, "
            f"{self.already_done} already done of {self.eligible} eligible; "
            f"cost {self.final_cost.normalize():f} {self.cost_unit}{est}{per}; {self.wall_s:.1f}s"
        )
