"""Column schemas for the catalog (Dagster's ``dagster/column_schema``): each table's columns with their
Arrow type, and what a reader needs to know of the report columns people query first."""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel

# what the report columns mean to a reader; every report column has one (tests/presentation/test_columns.py)
REPORT_COLUMN_DOCS: dict[str, str] = {
    "provider": "the provider's registered name",
    "resolution": "1K, 2K or 4K",
    "day": "UTC day the outcome was recorded",
    "source_uri": "the prompt table the rows came from",
    "cost_unit": "the provider's billing unit: credits or usd",
    "requests": "ledger rows (every attempt)",
    "succeeded": "rows with a stored image",
    "failed": "rows without an image, billed or not (a wrong-size result is billed)",
    "skipped": "rows never submitted (budget, funds, auth)",
    "failed_unresolved": "failed rows still the latest outcome of their prompt",
    "credits_reserved": "credits the provider reserved (credit providers only)",
    "credits_final": "credits the provider charged (credit providers only)",
    "final_cost": "what every row cost, in cost_unit: exact where the provider bills it, else the price table",
    "cost_lost_to_failures": "final_cost of failed rows (e.g. billed wrong-size images), in cost_unit",
    "cost_per_success": "final_cost / succeeded, in cost_unit: failed attempts' cost included",
    "cost_per_success_usd": "estimated_usd / succeeded: USD per successful image, failed attempts included",
    "usable": "succeeded rows whose image is not judged blank, a duplicate or a copy of its reference",
    "cost_per_usable": "final_cost / usable, in cost_unit: what a usable image really cost",
    "cost_per_usable_usd": "estimated_usd / usable: USD per usable image",
    "estimated_usd": "final_cost in USD: an estimate for credits (configured rate) and for table prices",
    "cost_is_estimate": "final_cost comes from the configured price table, not from the provider",
    "expected_cost": "succeeded x the table price, in cost_unit",
    "cost_delta": "final_cost - expected_cost: positive when more was paid than the images kept",
    "stated_vs_list": "what the provider stated for its successes minus their table price",
    "cost_anomalies": "rows whose provider-stated amount was not believed (booked at the list price)",
    "failures_by_reason": "JSON: error code -> failed rows",
    "skips_by_reason": "JSON: error code -> skipped rows",
    "images": "distinct prompts (fingerprints) with a stored image",
    "failure_rate": "failed / (succeeded + failed), attempts",
    "size_mismatches": "rows whose image came back at the wrong pixel size (billed, quarantined)",
    "cost_per_image": "final_cost / images, in cost_unit",
    "cost_per_image_usd": "estimated_usd / images: USD per image, failed attempts included",
    "usable_images": "distinct prompts with a stored image not judged blank, a duplicate or a reference copy",
    "cost_per_usable_image": "final_cost / usable_images, in cost_unit",
    "cost_per_usable_image_usd": "estimated_usd / usable_images: USD per usable image",
    "price_per_image": "the price table's figure, for comparison with cost_per_image",
    "latency_p50_s": "median seconds from submit to result, succeeded rows",
    "latency_p95_s": "95th percentile seconds from submit to result, succeeded rows",
    "common_prompts": "prompts that succeeded on every provider at this resolution",
    "common_cost": "what those common prompts cost in this cell, failed attempts included, in cost_unit",
    "common_cost_usd": "common_cost in USD (estimate)",
    "common_cost_per_image_usd": "common_cost_usd / common_prompts",
}


class ColumnDoc(BaseModel):
    name: str
    type: str
    description: str | None = None


def _type_name(kind: pa.DataType) -> str:
    if pa.types.is_null(kind):
        return "string"  # a column with no value yet: every such report column is text or JSON
    return str(kind)


def column_docs(schema: pa.Schema, descriptions: dict[str, str] | None = None) -> list[ColumnDoc]:
    """``schema``'s columns in order, typed, described where ``descriptions`` knows them."""
    descriptions = descriptions or {}
    return [ColumnDoc(name=f.name, type=_type_name(f.type), description=descriptions.get(f.name)) for f in schema]
