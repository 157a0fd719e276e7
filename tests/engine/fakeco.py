"""FakeCo: a third image provider that exists only in the tests, to prove the provider seam.

``FakeCoServer`` is the provider's side (tasks, idempotency keys, billing, poll counts) in plain
Python; ``FakeCoClient`` implements ``ProviderClient`` over it with its own ``traits``: name
``fakeco``, idempotent submits, no cancel, references by URL, billed at its list price on success.
Nothing in ``nbpro_pipeline`` knows this provider; the engine, journal, ledger and audit run it
unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO, Literal

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
from nbpro_pipeline.providers.errors import (
    InvalidRequestError,
    NotFoundError,
    UnreadableResultError,
    UnsupportedOperationError,
)
from nbpro_pipeline.providers.policies import LatencyTracker

NAME = "fakeco"
PRICE = Decimal("0.05")
RAW_BODY = b'{"artifacts": [{"blob": "somewhere-new"}], "status": "done"}'

FAKECO_TRAITS = ProviderTraits(
    name=NAME,
    model_id="fakeco/banana-1",
    idempotent_submit=True,
    cancel=False,
    billing=Billing(),
    cost_unit="usd",
    cost_is_estimate=False,
    list_price={r: PRICE for r in Resolution},
    limits=ProviderLimits(
        display_name="FakeCo",
        max_prompt_chars=500,
        max_references=2,
        aspect_auto=False,
        output_formats=(OutputFormat.PNG,),
        references="url",
    ),
)


@dataclass
class FakeTask:
    task_id: str
    request: GenerationRequest
    polls_left: int  # status polls until the task is terminal


@dataclass
class FakeCoServer:
    """The provider's side: what it created, what it billed, how often it was asked."""

    polls_to_finish: int = 2
    unreadable: Literal["wait", "fetch"] | None = None  # where a finished task's result cannot be read
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> task id
    billed: dict[str, Decimal] = field(default_factory=dict)  # task id -> amount
    status_calls: int = 0
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def create(self, request: GenerationRequest, key: str | None) -> tuple[FakeTask, bool]:
        if key is not None and key in self.keys:
            return self.tasks[self.keys[key]], True
        task = FakeTask(f"fk_{next(self._ids):05d}", request, self.polls_to_finish)
        self.tasks[task.task_id] = task
        if key is not None:
            self.keys[key] = task.task_id
        return task, False

    def status(self, task_id: str) -> TaskSnapshot:
        self.status_calls += 1
        task = self.tasks.get(task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}", provider=NAME, status_code=404)
        task.polls_left = max(0, task.polls_left - 1)
        if task.polls_left:
            return TaskSnapshot(provider=NAME, task_id=task_id, state=TaskState.RUNNING)
        self.billed[task_id] = PRICE  # billed once it finished, however often it is asked
        return TaskSnapshot(
            provider=NAME,
            task_id=task_id,
            state=TaskState.SUCCEEDED,
            images=(ResultImage(url=f"mem://fakeco/{task_id}.png", content_type="image/png"),),
        )


def png_for(request: GenerationRequest) -> bytes:
    width, height = pixel_size(request.aspect_ratio, request.resolution)
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 180, 40)).save(buf, "PNG")
    return buf.getvalue()


class FakeCoClient:
    traits = FAKECO_TRAITS

    def __init__(self, server: FakeCoServer) -> None:
        self.server = server
        self.counters: Counter[str] = Counter()
        self.run_times = LatencyTracker()  # FakeCo reports no processing times: the admission starts cold

    def attach_admission(self, on_poll) -> None:
        """FakeCo never answers a create 429 and its polls carry nothing the admission needs."""

    async def take_send_token(self) -> None:
        """FakeCo has no rate limit: nothing to take."""

    async def __aenter__(self) -> FakeCoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        pass

    async def submit(self, request: GenerationRequest, *, idempotency_key: str | None = None) -> SubmittedTask:
        problems = request.problems_for(NAME, self.traits.limits)
        if problems:
            raise InvalidRequestError("; ".join(p.message for p in problems), provider=NAME, code="local_validation")
        await asyncio.sleep(0)
        self.counters["requests"] += 1
        task, replayed = self.server.create(request, idempotency_key)
        return SubmittedTask(
            provider=NAME,
            task_id=task.task_id,
            fingerprint=request.fingerprint(NAME),
            idempotency_key=idempotency_key,
            submitted_at=datetime.now(UTC),
            attempts=1,
            replayed=replayed,
        )

    async def poll(self, task: TaskLike) -> TaskSnapshot:
        await asyncio.sleep(0)
        self.counters["requests"] += 1
        return self.server.status(as_handle(task).task_id)

    async def wait(self, task: TaskLike, *, deadline_s: float | None = None) -> TaskSnapshot:
        task_id = as_handle(task).task_id
        polls = 0
        while True:
            snap = await self.poll(task_id)
            polls += 1
            if snap.state.terminal:
                break
        snap = snap.model_copy(update={"polls": polls})
        if self.server.unreadable == "wait":
            raise UnreadableResultError(
                "finished, but its result has a shape this client does not know",
                provider=NAME,
                task_id=task_id,
                raw_body=RAW_BODY,
                content_type="application/json",
                snapshot=snap,
                polls=polls,
            )
        return snap

    async def fetch_result(
        self, snapshot: TaskSnapshot, sink: BinaryIO, *, index: int | None = None
    ) -> DownloadedImage:
        if self.server.unreadable == "fetch":
            raise UnreadableResultError(
                "the result body is not an image this client knows",
                provider=NAME,
                task_id=snapshot.task_id,
                raw_body=RAW_BODY,
                content_type="application/json; charset=utf-8",
                snapshot=snapshot,
            )
        data = png_for(self.server.tasks[snapshot.task_id].request)
        sink.write(data)
        return DownloadedImage(
            url=snapshot.images[index or 0].url,
            content_type="image/png",
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            attempts=1,
        )

    async def cancel(self, task: TaskLike) -> CancelOutcome:
        raise UnsupportedOperationError("FakeCo has no cancel", provider=NAME)

    async def upload_reference(self, source: bytes | Path, *, name: str | None = None) -> ReferenceImage:
        raise UnsupportedOperationError("FakeCo fetches reference URLs itself", provider=NAME)

    async def balance(self) -> Balance:
        return Balance(provider=NAME, amount=Decimal(100), unit="usd")
