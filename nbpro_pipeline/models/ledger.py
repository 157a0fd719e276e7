"""One ledger row per request outcome: what was asked, what came back, and what it cost.

The ledger is a Parquet dataset hive-partitioned by provider and resolution, read as is by pandas,
DuckDB and Spark, so its schema is fixed here once. ``final_cost`` is a decimal, not a float: report
totals must equal the providers' billing to the last micro-dollar, and floats cannot promise that.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, field_validator

from nbpro_pipeline.models.common import Resolution

COST_TYPE = pa.decimal128(18, 6)
_COST_PLACES = Decimal("0.000001")
_COST_LIMIT = Decimal(10) ** 12  # decimal128(18, 6) holds less than this
_INT64 = 2**63
LEDGER_PARTITION_COLUMNS = ("provider", "resolution")


class OutcomeStatus(StrEnum):
    SUCCEEDED = "succeeded"  # a valid image is stored
    FAILED = "failed"  # the provider or validation said no; error_code says why
    SKIPPED = "skipped"  # never submitted (budget, provider refused the account); nothing charged


# A row failed with one of these still has a live (or paid, unread) task: the next run polls that task
# again instead of submitting a new one. ``internal_error`` counts only on a row with a task id: an
# unexpected exception after the submit leaves a task the provider made (and may have billed).
RESUMABLE_CODES = frozenset(
    {"download_failed", "deadline_exceeded", "poll_failed", "internal_error", "result_unreadable"}
)

CostUnit = Literal["credits", "usd"]


class LedgerRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    # what was asked
    prompt_id: str
    prompt_sha256: str
    source_uri: str
    source_sha256: str
    row_number: int
    provider: str  # a registered provider's name
    resolution: Resolution
    aspect_ratio: str
    output_format: str
    model_requested: str
    model_served: str | None = None  # as the provider stated it; None where it did not say
    params: str  # JSON of the request's parameters (prompt excluded; it has its own hash)
    fingerprint: str
    idempotency_key: str | None = None
    task_id: str | None = None
    # what came back
    status: OutcomeStatus
    error_code: str | None = None
    error_message: str | None = None
    credits_reserved: int | None = None  # where the provider reports credits per task
    credits_final: int | None = None
    final_cost: Decimal  # net amount charged for this row, in cost_unit
    cost_unit: CostUnit
    cost_is_estimate: bool  # True where the provider publishes no price (a configured price table)
    estimated_usd: Decimal | None = None
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    queue_s: float | None = None
    run_s: float | None = None
    latency_s: float | None = None  # submit to terminal state
    attempts: int = 0
    polls: int = 0
    # what was stored
    image_uri: str | None = None
    image_sha256: str | None = None  # of the stored file (lineage embedded)
    provider_sha256: str | None = None  # of the bytes as downloaded
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    # where it ran
    run_id: str
    partition_key: str
    pipeline_version: str
    recorded_at: datetime
    # the money behind final_cost: the task's total as this row knows it (readers count a task once by
    # it), what the provider stated, the price table's figure, and a provider figure not believed
    task_total: Decimal | None = None
    stated_cost: Decimal | None = None
    list_price: Decimal | None = None
    cost_anomaly: str | None = None
    model_version: str | None = None  # the served model's version, where the provider stated one

    @field_validator("final_cost", "estimated_usd", "task_total", "stated_cost", "list_price")
    @classmethod
    def _fits_the_cost_column(cls, value: Decimal | None) -> Decimal | None:
        """Six places, as the Parquet column holds them; an amount the column cannot hold is refused here,
        at the row, never at a flush where it would take the other rows down with it."""
        if value is None:
            return None
        if not abs(Decimal(value)) < _COST_LIMIT:
            raise ValueError(f"amount {value} does not fit the ledger's cost column")
        return Decimal(value).quantize(_COST_PLACES)

    @field_validator("row_number", "credits_reserved", "credits_final", "attempts", "polls", "width", "height", "bytes")
    @classmethod
    def _fits_int64(cls, value: int | None) -> int | None:
        if value is not None and not -_INT64 <= value < _INT64:
            raise ValueError(f"{value} does not fit a 64-bit column")
        return value


_TS = pa.timestamp("us", tz="UTC")

LEDGER_SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("prompt_sha256", pa.string()),
        ("source_uri", pa.string()),
        ("source_sha256", pa.string()),
        ("row_number", pa.int64()),
        ("provider", pa.string()),
        ("resolution", pa.string()),
        ("aspect_ratio", pa.string()),
        ("output_format", pa.string()),
        ("model_requested", pa.string()),
        ("model_served", pa.string()),
        ("params", pa.string()),
        ("fingerprint", pa.string()),
        ("idempotency_key", pa.string()),
        ("task_id", pa.string()),
        ("status", pa.string()),
        ("error_code", pa.string()),
        ("error_message", pa.string()),
        ("credits_reserved", pa.int64()),
        ("credits_final", pa.int64()),
        ("final_cost", COST_TYPE),
        ("cost_unit", pa.string()),
        ("cost_is_estimate", pa.bool_()),
        ("estimated_usd", COST_TYPE),
        ("submitted_at", _TS),
        ("finished_at", _TS),
        ("queue_s", pa.float64()),
        ("run_s", pa.float64()),
        ("latency_s", pa.float64()),
        ("attempts", pa.int64()),
        ("polls", pa.int64()),
        ("image_uri", pa.string()),
        ("image_sha256", pa.string()),
        ("provider_sha256", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("bytes", pa.int64()),
        ("run_id", pa.string()),
        ("partition_key", pa.string()),
        ("pipeline_version", pa.string()),
        ("recorded_at", _TS),
        ("task_total", COST_TYPE),
        ("stated_cost", COST_TYPE),
        ("list_price", COST_TYPE),
        ("cost_anomaly", pa.string()),
        ("model_version", pa.string()),
    ]
)


def records_to_table(records: list[LedgerRecord]) -> pa.Table:
    rows = [r.model_dump(mode="python") for r in records]
    for row in rows:
        for key in ("provider", "resolution", "status"):
            row[key] = str(row[key].value if hasattr(row[key], "value") else row[key])
    return pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)
