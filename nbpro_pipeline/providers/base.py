"""The one small interface both provider clients implement, and the provider-neutral results.

The engine talks only to ``ProviderClient``; provider quirks (Rivya's credits and idempotency keys,
OdiRouter's separate response endpoint and cancel) stay inside the two clients.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.models.common import Provider, TaskState
from nbpro_pipeline.models.request import GenerationRequest, ReferenceImage


class ResultImage(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    file_size: int | None = None


class TaskSnapshot(BaseModel):
    """What the provider said about a task at one moment, in provider-neutral terms."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    task_id: str
    state: TaskState
    images: tuple[ResultImage, ...] = ()
    error_code: str | None = None  # Rivya error.code / OdiRouter error_type
    error_message: str | None = None
    credits_reserved: int | None = None  # Rivya only
    credits_final: int | None = None  # Rivya only; None until settled
    queue_position: int | None = None
    polls: int = 0  # status requests made by wait() to reach this snapshot
    # Whether the provider bills this task, when the client can tell from the provider's own answer
    # (OdiRouter: a cancelled task is billed only if it had started processing); None: not known here.
    billed: bool | None = None
    run_s: float | None = None  # provider-reported seconds from creation to the terminal state, if known


class SubmittedTask(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: Provider
    task_id: str
    fingerprint: str
    idempotency_key: str | None  # None on OdiRouter, which has no such header
    submitted_at: datetime
    attempts: int  # HTTP attempts the create took (retries included)
    snapshot: TaskSnapshot | None = None  # Rivya answers the create with the task itself
    # The provider answered with a task it had already created for this idempotency key (Rivya's
    # ``Idempotent-Replayed`` header): the task may already be in a ledger and must not be booked twice.
    replayed: bool = False


class DownloadedImage(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str  # without its query string: signed URL tokens stay out of ledgers and logs
    content_type: str | None
    bytes: int
    sha256: str
    attempts: int


class Balance(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: Provider
    amount: Decimal
    unit: Literal["credits", "usd"]


class CancelOutcome(StrEnum):
    REQUESTED = "CANCELLATION_REQUESTED"
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    NOT_FOUND = "NOT_FOUND"


@runtime_checkable
class ProviderClient(Protocol):
    provider: Provider

    async def submit(self, request: GenerationRequest, *, idempotency_key: str | None = None) -> SubmittedTask: ...

    async def poll(self, task_id: str) -> TaskSnapshot: ...

    async def wait(self, task_id: str, *, deadline_s: float | None = None) -> TaskSnapshot: ...

    async def fetch_result(self, snapshot: TaskSnapshot, sink: BinaryIO, *, index: int = 0) -> DownloadedImage: ...

    async def cancel(self, task_id: str) -> CancelOutcome: ...

    async def upload_reference(self, source: bytes | Path, *, name: str | None = None) -> ReferenceImage: ...

    async def balance(self) -> Balance: ...

    async def aclose(self) -> None: ...
