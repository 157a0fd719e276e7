"""Builders for ledger and accepted-prompt tables, so each test states only what it is about."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from nbpro_pipeline.models.ledger import LedgerRecord, records_to_table
from nbpro_pipeline.models.prompt import ACCEPTED_SCHEMA
from nbpro_pipeline.providers.registry import PROVIDERS, Provider

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
_seq = itertools.count()


def record(
    prompt_id: str = "p1",
    *,
    provider: str = "rivya",
    resolution: str = "2K",
    status: str = "succeeded",
    cost: str | int | Decimal | None = None,
    error_code: str | None = None,
    at: datetime = T0,
    latency_s: float | None = 1.0,
    source_uri: str = "file:///data/prompts.csv",
    fingerprint: str | None = None,
    prompt_sha256: str | None = None,
    aspect_ratio: str = "1:1",
    output_format: str = "png",
    **extra: Any,
) -> LedgerRecord:
    """One ledger row; cost defaults to what the provider charges for ``status``."""
    p = Provider(provider)
    if cost is None and status != "succeeded":
        cost = 0
    elif cost is None:
        cost = 8 if p is Provider.RIVYA else ("0.30" if resolution == "4K" else "0.15")
    rivya = p is Provider.RIVYA
    fields: dict[str, Any] = dict(
        prompt_id=prompt_id,
        prompt_sha256=prompt_sha256 or f"sha-{prompt_id}",
        source_uri=source_uri,
        source_sha256="src-sha",
        row_number=1,
        provider=p,
        resolution=resolution,
        aspect_ratio=aspect_ratio,
        output_format=output_format,
        model_requested="nano-banana-pro",
        params="{}",
        fingerprint=fingerprint or f"fp-{provider}-{resolution}-{prompt_id}",
        status=status,
        error_code=error_code,
        credits_reserved=8 if rivya and status != "skipped" else None,
        credits_final=int(Decimal(cost)) if rivya and status != "skipped" else None,
        final_cost=Decimal(cost),
        cost_unit=PROVIDERS.traits(p).cost_unit,
        cost_is_estimate=not rivya,
        submitted_at=at - timedelta(seconds=latency_s or 0) if status != "skipped" else None,
        finished_at=at if status != "skipped" else None,
        latency_s=latency_s if status != "skipped" else None,
        run_id=f"run-{next(_seq)}",
        partition_key=f"{provider}|{resolution}",
        pipeline_version="test",
        recorded_at=at,
    )
    fields.update(extra)
    return LedgerRecord(**fields)


def ledger(*records: LedgerRecord) -> pa.Table:
    return records_to_table(list(records))


def odirouter_mix() -> pa.Table:
    """7 x 0.15 at 2K, 3 x 0.30 at 4K, plus failures (one billed wrong-size image) and a skip."""
    return ledger(
        *[record(f"a{i}", provider="odirouter", resolution="2K") for i in range(7)],
        *[record(f"b{i}", provider="odirouter", resolution="4K") for i in range(3)],
        record("c0", provider="odirouter", resolution="2K", status="failed", error_code="INFERENCE_FAILURE"),
        record("c1", provider="odirouter", resolution="2K", status="failed", error_code="size_mismatch", cost="0.15"),
        record("c2", provider="odirouter", resolution="2K", status="skipped", error_code="budget_exceeded"),
    )


def accepted(*rows: dict[str, Any]) -> pa.Table:
    """Accepted prompt rows; each dict needs only ``prompt_id`` plus what differs from the defaults."""
    full = []
    for i, row in enumerate(rows, start=1):
        pid = row["prompt_id"]
        full.append(
            {
                "prompt": f"a picture of {pid}",
                "prompt_sha256": f"sha-{pid}",
                "aspect_ratio": "1:1",
                "resolution": None,
                "output_format": "png",
                "provider": None,
                "reference_images": [],
                "source_uri": "file:///data/prompts.csv",
                "source_sha256": "src-sha",
                "row_number": i,
                "eligible_providers": ["rivya", "odirouter"],
                "extra": "{}",
                **row,
            }
        )
    return pa.Table.from_pylist(full, schema=ACCEPTED_SCHEMA)
