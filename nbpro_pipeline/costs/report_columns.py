"""The report tables' columns, what each reads of the ledger, and which of them hold money.

Money columns hold ``decimal.Decimal`` values (pandas ``object`` dtype) and are written to Parquet as
``decimal128(38, 6)`` (``report_parquet``); only rates, shares and latencies are floats.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

REPORT_COST_TYPE = pa.decimal128(38, 6)

CREDIT_COST_COLUMNS = [
    "provider",
    "resolution",
    "day",  # UTC date of recorded_at
    "source_uri",
    "cost_unit",
    "requests",  # ledger rows
    "succeeded",
    "failed",
    "skipped",
    "failed_unresolved",  # failed rows that are still the latest outcome of their fingerprint
    "credits_reserved",  # where the provider reports credits per task (else null)
    "credits_final",
    "final_cost",  # Decimal, cost_unit, every row
    "cost_lost_to_failures",  # Decimal: final_cost of failed rows (e.g. billed wrong-size images)
    "cost_per_success",  # Decimal: final_cost / succeeded (failures' cost included); null without successes
    "estimated_usd",  # Decimal: final_cost in USD through the price table
    "cost_is_estimate",  # the cost is read from the configured price table, not reported by the provider
    "expected_cost",  # Decimal: succeeded x table price
    "cost_delta",  # Decimal: final_cost - expected_cost (positive: paid for more than the images kept)
    "stated_vs_list",  # Decimal: what the provider stated for its successes minus the table price of them
    "cost_anomalies",  # rows whose provider-stated amount was not believed (booked at the list price)
    "failures_by_reason",  # JSON object {error_code: failed rows}
    "skips_by_reason",  # JSON object {error_code: skipped rows}
]

COMPARISON_COLUMNS = [
    "provider",
    "resolution",
    "cost_unit",
    "requests",
    "succeeded",
    "failed",
    "skipped",
    "images",  # distinct fingerprints with a succeeded row
    "failure_rate",  # failed / (succeeded + failed), attempts
    "size_mismatches",  # rows with error_code size_mismatch
    "final_cost",  # Decimal, every row
    "cost_per_image",  # Decimal: final_cost / images
    "estimated_usd",
    "cost_per_image_usd",
    "price_per_image",  # the price table's figure, for comparison with cost_per_image
    "cost_is_estimate",
    "latency_p50_s",  # of succeeded rows, linear interpolation
    "latency_p95_s",
    "common_prompts",  # (prompt_id, prompt_sha256) that succeeded on every provider at this resolution
    "common_cost",  # Decimal: every row of those prompts in this cell (their failed attempts included)
    "common_cost_usd",
    "common_cost_per_image_usd",
]

FAILURE_REASON_COLUMNS = ["provider", "resolution", "day", "source_uri", "status", "error_code", "rows", "cost"]

# what credit_cost_report reads of the ledger
CREDIT_LEDGER_COLUMNS = [
    "provider",
    "resolution",
    "fingerprint",
    "source_uri",
    "status",
    "error_code",
    "credits_reserved",
    "credits_final",
    "final_cost",
    "cost_is_estimate",
    "recorded_at",
    "stated_cost",
    "list_price",
    "cost_anomaly",
]

# what provider_comparison reads of the ledger
COMPARISON_LEDGER_COLUMNS = [
    "prompt_id",
    "prompt_sha256",
    "provider",
    "resolution",
    "fingerprint",
    "status",
    "error_code",
    "final_cost",
    "cost_is_estimate",
    "latency_s",
]

# money columns of the reports: written as decimal128 even when every value is missing
MONEY_COLUMNS = {
    "final_cost",
    "cost_lost_to_failures",
    "cost_per_success",
    "estimated_usd",
    "expected_cost",
    "cost_delta",
    "cost_per_image",
    "cost_per_image_usd",
    "price_per_image",
    "common_cost",
    "common_cost_usd",
    "common_cost_per_image_usd",
    "cost",
}


def empty_report(columns: list[str]) -> pd.DataFrame:
    """A report with ``columns`` and no rows."""
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
