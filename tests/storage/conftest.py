"""Builders for storage tests: ledger records with only the fields a test is about, and storage roots."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import LedgerRecord
from nbpro_pipeline.providers.registry import PROVIDERS, Provider
from nbpro_pipeline.storage import Storage

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
_seq = itertools.count(1)


def ledger_record(
    prompt_id: str = "p1",
    *,
    provider: Provider | str = Provider.RIVYA,
    resolution: Resolution | str = Resolution.R1K,
    status: str = "succeeded",
    cost: Decimal | str | int = 8,
    run_id: str = "run-1",
    **extra: Any,
) -> LedgerRecord:
    p, r = Provider(provider), Resolution(resolution)
    n = next(_seq)
    fields: dict[str, Any] = dict(
        prompt_id=prompt_id,
        prompt_sha256=f"sha-{prompt_id}",
        source_uri="file:///data/prompts.csv",
        source_sha256="src",
        row_number=n,
        provider=p,
        resolution=r,
        aspect_ratio="1:1",
        output_format="png",
        model_requested="nano-banana-pro",
        params="{}",
        fingerprint=f"fp-{p.value}-{r.value}-{prompt_id}",
        task_id=f"task-{n}",
        status=status,
        final_cost=Decimal(cost),
        cost_unit=PROVIDERS.traits(p).cost_unit,
        cost_is_estimate=p is Provider.ODIROUTER,
        run_id=run_id,
        partition_key=f"{p.value}|{r.value}",
        pipeline_version="test",
        recorded_at=T0 + timedelta(seconds=n),
    )
    fields.update(extra)
    return LedgerRecord(**fields)


@pytest.fixture
def local_storage(tmp_path) -> Storage:
    return Storage(tmp_path / "root")


@pytest.fixture
def memory_storage():
    """A fresh fsspec in-memory root (the memory filesystem is process-wide: a unique prefix per test)."""
    storage = Storage(f"memory://nbpro-test-{uuid.uuid4().hex}")
    yield storage
    if storage.fs.exists(storage.root):
        storage.fs.rm(storage.root, recursive=True)


@pytest.fixture(params=["local", "memory"])
def any_storage(request, local_storage, memory_storage) -> Storage:
    return local_storage if request.param == "local" else memory_storage
