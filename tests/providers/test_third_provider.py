"""A third provider added in this one file (its client, traits and registry entry) and seen, without
touching any other file, in prompt validation, the partitions, a Dagster materialization of its cell, the
ledger, credit_cost_report, provider_comparison, the FOCUS export, ``nbpro estimate`` and the galleries.

ThirdCo is served from memory: it accepts 300-character prompts and no references, bills 0.07 USD an
image at every resolution on success, and answers each task after one poll.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import dagster as dg
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from nbpro_pipeline.models.common import OutputFormat, Resolution, TaskState, pixel_size
from nbpro_pipeline.models.limits import ProviderLimits
from nbpro_pipeline.models.request import GenerationRequest, ReferenceImage
from nbpro_pipeline.providers.base import (
    Balance,
    Billing,
    CancelOutcome,
    DownloadedImage,
    ProviderTraits,
    ResultImage,
    SubmittedTask,
    TaskLike,
    TaskSnapshot,
    as_handle,
)
from nbpro_pipeline.providers.entry import ProviderEntry
from nbpro_pipeline.providers.errors import InvalidRequestError, UnsupportedOperationError
from nbpro_pipeline.providers.policies import LatencyTracker
from nbpro_pipeline.providers.registry import registered

NAME = "thirdco"
PRICE = Decimal("0.07")

TRAITS = ProviderTraits(
    name=NAME,
    model_id="thirdco/banana-3",
    idempotent_submit=True,
    cancel=False,
    billing=Billing(),
    cost_unit="usd",
    cost_is_estimate=False,
    list_price={r: PRICE for r in Resolution},
    limits=ProviderLimits(
        display_name="ThirdCo",
        max_prompt_chars=300,
        max_references=0,
        aspect_auto=False,
        output_formats=(OutputFormat.PNG,),
        references="url",
    ),
    price_note="ThirdCo reports what each task cost",
    chart_colours=("#d9f0a3", "#78c679", "#238443"),
)


class ThirdCoClient:
    """The whole provider, in memory: a task is created at submit and finished at its first poll."""

    traits = TRAITS
    tasks: dict[str, GenerationRequest] = {}  # shared by every client, as a provider's state is
    billed: dict[str, Decimal] = {}
    _ids = itertools.count(1)

    def __init__(self, base_url: str, api_key: Any, **_: Any) -> None:
        self.counters: Counter[str] = Counter()
        self.run_times = LatencyTracker()
        self._keys: dict[str, str] = {}

    async def __aenter__(self) -> ThirdCoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        pass

    def attach_admission(self, on_poll) -> None:
        pass

    async def take_send_token(self) -> None:
        pass

    async def submit(self, request: GenerationRequest, *, idempotency_key: str | None = None) -> SubmittedTask:
        problems = request.problems_for(NAME, TRAITS.limits)
        if problems:
            raise InvalidRequestError("; ".join(p.message for p in problems), provider=NAME)
        task_id = self._keys.get(idempotency_key or "") or f"tc_{next(self._ids):05d}"
        self._keys[idempotency_key or task_id] = task_id
        self.tasks[task_id] = request
        await asyncio.sleep(0)
        return SubmittedTask(
            provider=NAME,
            task_id=task_id,
            fingerprint=request.fingerprint(NAME),
            idempotency_key=idempotency_key,
            submitted_at=datetime.now(UTC),
            attempts=1,
        )

    async def poll(self, task: TaskLike) -> TaskSnapshot:
        task_id = as_handle(task).task_id
        self.billed[task_id] = PRICE
        image = ResultImage(url=f"mem://thirdco/{task_id}.png", final=True)
        return TaskSnapshot(
            provider=NAME, task_id=task_id, state=TaskState.SUCCEEDED, images=(image,), stated_cost=PRICE
        )

    async def wait(self, task: TaskLike, *, deadline_s: float | None = None) -> TaskSnapshot:
        return (await self.poll(task)).model_copy(update={"polls": 1})

    async def fetch_result(
        self, snapshot: TaskSnapshot, sink: BinaryIO, *, index: int | None = None
    ) -> DownloadedImage:
        request = self.tasks[snapshot.task_id]
        buf = io.BytesIO()
        Image.new("RGB", pixel_size(request.aspect_ratio, request.resolution), (40, 160, 90)).save(buf, "PNG")
        sink.write(buf.getvalue())
        digest = hashlib.sha256(buf.getvalue()).hexdigest()
        return DownloadedImage(
            url=snapshot.images[0].url, content_type="image/png", bytes=buf.tell(), sha256=digest, attempts=1
        )

    async def cancel(self, task: TaskLike) -> CancelOutcome:
        raise UnsupportedOperationError("ThirdCo has no cancel", provider=NAME)

    async def upload_reference(self, source: bytes | Path, *, name: str | None = None) -> ReferenceImage:
        raise UnsupportedOperationError("ThirdCo takes no references", provider=NAME)

    async def balance(self) -> Balance:
        return Balance(provider=NAME, amount=Decimal(100), unit="usd")


ENTRY = ProviderEntry(traits=TRAITS, client=ThirdCoClient, env_prefix="THIRDCO", base_url="mem://thirdco")


@pytest.fixture
def thirdco(monkeypatch):
    # the cell asset needs every provider's resource; only ThirdCo's is ever called
    for prefix in ("THIRDCO", "RIVYA", "ODIROUTER"):
        monkeypatch.setenv(f"{prefix}_API_KEY", "key_for_tests")
    with registered(ENTRY):
        yield ENTRY


@pytest.fixture
def tables(tmp_path) -> Path:
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "prompts.csv").write_text(
        "id,prompt,provider\n"
        "shared,a lighthouse at dusk,\n"
        "only-third,a green garden,thirdco\n"
        "too-long-for-third," + "x" * 400 + ",\n"
    )
    return folder


@pytest.mark.slow
def test_the_third_provider_runs_everywhere_the_shipped_ones_do(thirdco, tables, tmp_path):
    from assets_defs.definitions import build_defs
    from assets_defs.resources import PipelineResource, StorageResource
    from nbpro_pipeline.prompts import load_prompt_tables

    # prompt validation: its name is a known provider, its limits reject a row for it alone
    loaded = load_prompt_tables([str(tables)])
    eligible = {r["prompt_id"]: r["eligible_providers"] for r in loaded.accepted.to_pylist()}
    assert (
        NAME in eligible["shared"] and eligible["only-third"] == [NAME] and NAME not in eligible["too-long-for-third"]
    )
    (rejection,) = [r for r in loaded.rejected.to_pylist() if r["provider"] == NAME]
    assert "ThirdCo accepts at most 300" in rejection["message"]

    # the partitions and the resources
    defs = build_defs()
    assert "thirdco|1K" in defs.resolve_job_def("cells_job").partitions_def.get_partition_keys()
    storage_root = tmp_path / "storage"
    pipeline = PipelineResource(prompt_sources=[str(tables)])
    resources = dict(defs.resources, storage=StorageResource(root=str(storage_root)), pipeline=pipeline)

    # a Dagster materialization of its cell, then the reports
    with dg.instance_for_test() as instance:
        assets = [defs.get_assets_def(k) for k in ("prompt_table", "generated_images")]
        assert dg.materialize(assets[:1], instance=instance, resources=resources).success
        cell = dg.materialize(assets[1:], partition_key="thirdco|1K", instance=instance, resources=resources)
        assert cell.success
        reports = [defs.get_assets_def(k) for k in ("credit_cost_report", "provider_comparison", "focus_cost_export")]
        assert dg.materialize(reports, instance=instance, resources=resources).success
    _assert_seen_in_storage(storage_root)
    _assert_seen_by_nbpro_estimate(tables, storage_root)


def _assert_seen_in_storage(root: Path) -> None:
    from nbpro_pipeline.storage import read_ledger

    ledger = [r for r in read_ledger(str(root)).to_pylist() if r["provider"] == NAME]
    assert {r["prompt_id"] for r in ledger} == {"shared", "only-third"}
    assert all(r["status"] == "succeeded" and r["final_cost"] == PRICE for r in ledger)
    assert set(ThirdCoClient.billed) >= {r["task_id"] for r in ledger}
    report = pq.read_table(root / "reports" / "credit_cost_report.parquet").to_pylist()
    assert [r["final_cost"] for r in report if r["provider"] == NAME] == [2 * PRICE]
    comparison = {r["provider"]: r for r in pq.read_table(root / "reports" / "provider_comparison.parquet").to_pylist()}
    assert comparison[NAME]["images"] == 2 and comparison[NAME]["cost_per_image"] == PRICE
    focus = [r for r in pq.read_table(root / "reports" / "focus_cost_export.parquet").to_pylist()]
    assert {r["ProviderName"] for r in focus} == {"ThirdCo"} and sum(r["BilledCost"] for r in focus) == 2 * PRICE
    page = (root / "gallery" / f"provider={NAME}" / "resolution=1K" / "index.html").read_text()
    assert "shared" in page and "only-third" in page


def _assert_seen_by_nbpro_estimate(tables: Path, root: Path) -> None:
    from nbpro_pipeline.cli import main

    out = CliRunner().invoke(main, ["estimate", str(tables), "--cells", "thirdco|*", "--ledger-root", str(root)])
    assert out.exit_code == 0, out.output
    assert "thirdco|1K" in out.output and "thirdco|4K" in out.output and "ThirdCo" in out.output
