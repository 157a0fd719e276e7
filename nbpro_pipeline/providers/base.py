"""The one small interface both provider clients implement, and the provider-neutral results.

The engine talks only to ``ProviderClient``; provider quirks (Rivya's credits and idempotency keys,
OdiRouter's separate response endpoint and cancel) stay inside the clients, and what the engine must
know about a provider (does submit dedupe, can a task be cancelled, how is a task billed, what does it
accept) is the client's ``traits``. The engine never asks *which* provider it holds, so a provider the
project does not ship (a test's fake) runs through it unchanged.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from nbpro_pipeline.models.common import Resolution, TaskState
from nbpro_pipeline.models.ledger import CostUnit
from nbpro_pipeline.models.limits import ProviderLimits
from nbpro_pipeline.models.request import GenerationRequest, ReferenceImage
from nbpro_pipeline.models.task import TaskUrls
from nbpro_pipeline.providers.policies import LatencyTracker

# A provider's id in paths, journals, ledgers and reports: its traits name (the registry's key).
ProviderName = str


def idempotency_key(namespace: str, fingerprint: str, generation: int = 0) -> str:
    """The one key derivation: same namespace (a storage root's ledger id), fingerprint and generation,
    same key, so a resubmit after a crash replays the original task for free; two roots on one account
    never share one; after a terminal failure a new generation needs a new key, or the provider would
    replay the failure."""
    base = fingerprint if generation == 0 else f"{fingerprint}#retry{generation}"
    return "nbpro-" + hashlib.sha256(f"idem:{namespace}:{base}".encode()).hexdigest()[:40]


class ResultImage(BaseModel):
    """One output image: a URL to download, or the bytes inline as a ``data:`` URI."""

    model_config = ConfigDict(frozen=True)

    url: str
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    file_size: int | None = None
    final: bool = False  # the provider's documented rule marks this one as the result (else the last)

    @property
    def inline(self) -> bool:
        return self.url.startswith("data:")


class TaskHandle(BaseModel):
    """A task the provider accepted: its id, the URLs it returned, and when (a 404 right after a create
    is the provider's store catching up, not an answer)."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    urls: TaskUrls = Field(default_factory=TaskUrls)
    accepted_at: datetime | None = None


TaskLike = TaskHandle | str  # a bare id: documented paths, no grace for a 404


def as_handle(task: TaskLike) -> TaskHandle:
    return task if isinstance(task, TaskHandle) else TaskHandle(task_id=task)


class TaskSnapshot(BaseModel):
    """What the provider said about a task at one moment, in provider-neutral terms."""

    model_config = ConfigDict(frozen=True)

    provider: ProviderName
    task_id: str
    state: TaskState
    images: tuple[ResultImage, ...] = ()
    error_code: str | None = None  # Rivya error.code / OdiRouter error_type
    error_message: str | None = None
    credits_reserved: int | None = None  # Rivya only, as the wire said
    credits_final: int | None = None  # Rivya only; None until settled
    # What the provider itself says the task has cost so far, in its cost unit (Rivya: credits held, then
    # final; a fal-style cost field or billable units): preferred over the price table once range-checked.
    stated_cost: Decimal | None = None
    billed_units: Decimal | None = None  # images the provider says it billed (fal's x-fal-billable-units)
    queue_position: int | None = None
    polls: int = 0  # status requests made by wait() to reach this snapshot
    # Whether the provider bills this task, when the client can tell from the provider's own answer
    # (OdiRouter: a cancelled task is billed only if it had started processing); None: not known here.
    billed: bool | None = None
    run_s: float | None = None  # provider-reported seconds from creation to the terminal state, if known
    # provider-reported seconds of processing only (OdiRouter/fal ``metrics.inference_time``), if known
    processing_s: float | None = None
    # the model the provider says it ran and its version, when it says (bounded: reading.read_model_id)
    model_served: str | None = None
    model_version: str | None = None
    urls: TaskUrls = Field(default_factory=TaskUrls)


class SubmittedTask(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: ProviderName
    task_id: str
    fingerprint: str
    idempotency_key: str | None  # None on OdiRouter, which has no such header
    submitted_at: datetime
    attempts: int  # HTTP attempts the create took (retries included)
    snapshot: TaskSnapshot | None = None  # Rivya answers the create with the task itself
    # The provider answered with a task it had already created for this idempotency key (Rivya's
    # ``Idempotent-Replayed`` header): the task may already be in a ledger and must not be booked twice.
    replayed: bool = False
    urls: TaskUrls = Field(default_factory=TaskUrls)

    @property
    def handle(self) -> TaskHandle:
        return TaskHandle(task_id=self.task_id, urls=self.urls, accepted_at=self.submitted_at)


class DownloadedImage(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str  # without its query string: signed URL tokens stay out of ledgers and logs
    content_type: str | None
    bytes: int
    sha256: str
    attempts: int


class Balance(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: ProviderName
    amount: Decimal
    unit: Literal["credits", "usd"]


class CancelOutcome(StrEnum):
    REQUESTED = "CANCELLATION_REQUESTED"
    ALREADY_COMPLETED = "ALREADY_COMPLETED"
    NOT_FOUND = "NOT_FOUND"


@dataclass(frozen=True)
class Charge:
    """What a task has cost in total as far as we know, the provider's own figure when it gave one, and
    why a figure it gave was not believed."""

    amount: Decimal
    stated: Decimal | None = None
    anomaly: str | None = None


class Billing(BaseModel):
    """How a provider bills a task: the one rule for what a task has cost, used by the engine when it
    books a row and by the audit when it asks the provider again. An accepted task costs its list price
    until the provider itself says otherwise."""

    model_config = ConfigDict(frozen=True)

    failed_unbilled: bool = Field(
        default=True, description="a task the provider reports failed is not billed (refunded, or never debited)"
    )
    cancelled_running_billed: bool = Field(
        default=False, description="a task cancelled while it was running is billed (OdiRouter, like fal)"
    )
    cancelled_code: str | None = Field(
        default=None, description="error code a poll shows for a cancelled task, when cancel exists"
    )
    max_stated_multiple: Decimal = Field(
        default=Decimal(10), gt=0, description="a stated cost above this many list prices is not believed"
    )

    def charge(self, snap: TaskSnapshot, price: Decimal) -> Charge:
        """What the provider has charged for the task in total, as of ``snap``: its own figure when it
        gave a sane one, else the rule (success billed, a reported failure not, anything else held)."""
        if snap.stated_cost is not None:
            return self.believe(snap.stated_cost, price)
        if snap.billed_units is not None:
            return self.believe(snap.billed_units * price, price)
        if snap.billed is not None:  # the provider's own answer (a cancelled task that had started)
            return Charge(price if snap.billed else Decimal(0))
        if snap.state is TaskState.FAILED and self.failed_unbilled:
            return Charge(Decimal(0))
        return Charge(price)

    def charged(self, snap: TaskSnapshot, price: Decimal) -> Decimal:
        return self.charge(snap, price).amount

    def believe(self, stated: Decimal, price: Decimal) -> Charge:
        """A provider-stated amount within 0 and ``max_stated_multiple`` list prices; anything else is
        booked at the list price and flagged, so one absurd number can neither refund nor bankrupt."""
        bound = max(price, Decimal(1)) * self.max_stated_multiple
        if Decimal(0) <= stated <= bound:
            return Charge(stated, stated)
        shown = f"{stated:.6g}" if abs(stated) < Decimal(10) ** 15 else f"{stated:.3e}"
        return Charge(price, None, f"stated cost {shown} outside 0..{bound:f}; booked at the list price {price:f}")

    def held(self, price: Decimal, earlier: Decimal) -> Decimal:
        """A task exists but its state is not known (a poll failed, an unexpected error): what earlier
        rows already booked for it, else its list price (0 would book a refund the provider never made)."""
        return earlier if earlier > 0 else price

    def after_deadline(
        self, running: bool, cancelled: bool, billed: bool | None, price: Decimal, earlier: Decimal
    ) -> Decimal:
        """What a task past its deadline has cost: the provider's word after a cancel when it gave one,
        else a cancelled running task is billed where the provider bills those and a cancelled queued
        one is free, else what it holds."""
        if billed is not None:
            return price if billed else Decimal(0)
        if cancelled:
            return price if (running and self.cancelled_running_billed) else Decimal(0)
        return self.held(price, earlier)

    def from_poll(self, snap: TaskSnapshot, price: Decimal) -> Decimal | None:
        """The charge a later poll proves, or None when a poll cannot tell (a cancelled task is billed only
        if it had started, and the poll does not say which; a task still running proves nothing)."""
        if not snap.state.terminal:
            return None
        if self.cancelled_code is not None and snap.error_code == self.cancelled_code and snap.billed is None:
            return None
        return self.charged(snap, price)


class ProviderTraits(BaseModel):
    """What the engine, journal, ledger and audit need to know about a provider, so none of them asks
    which provider it is. Each client exposes its own as ``client.traits``."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$", description="id in paths, ledger rows, reports")
    model_id: str = Field(description="the model the provider serves for this pipeline, for lineage")
    model_name: str = Field(
        default="Nano Banana Pro", description="the model's product name, for people (FOCUS ServiceName, XMP)"
    )
    model_developer: str = Field(
        default="Google", description="who made the model the provider serves (FOCUS PublisherName, XMP)"
    )
    host_provider_name: str | None = Field(
        default=None,
        description="whose infrastructure the provider runs the model on, where it says (FOCUS HostProviderName); "
        "None: undisclosed, so the provider itself",
    )
    idempotent_submit: bool = Field(
        description="a submit carries an idempotency key, so resending it after a crash replays the task"
    )
    cancel: bool = Field(description="a task past its deadline can be cancelled")
    admission: Literal["reject", "queue"] = Field(
        default="reject",
        description="what the provider does with a create beyond its concurrency limit: 'reject' answers "
        "429 (nothing made, nothing charged); 'queue' accepts it and keeps it queued (fal-style IN_QUEUE "
        "with a queue_position) until a slot frees. The engine's admission follows it.",
    )
    billing: Billing
    cost_unit: CostUnit
    cost_is_estimate: bool = Field(description="amounts come from a price table, not from the provider")
    list_price: dict[Resolution, Decimal] = Field(
        description="price of one image per resolution when no configured PriceTable covers the provider"
    )
    usd_per_unit: Decimal = Field(default=Decimal(1), ge=0, description="for the USD view of a cost")
    limits: ProviderLimits
    price_note: str = Field(
        default="", description="where its prices come from, for reports and estimates that show them"
    )
    pricing_currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="its unit as a currency code (FinOps FOCUS PricingCurrency): USD, or for credits a code from "
        "ISO 4217's user-assigned range (QMA-QZZ)",
    )
    chart_colours: tuple[str, str, str] = Field(
        default=("#c7e9c0", "#41ab5d", "#005a32"), description="one shade per resolution (1K, 2K, 4K) in charts"
    )

    @property
    def display_name(self) -> str:
        return self.limits.display_name

    @property
    def ai_system(self) -> str:
        """The system that made an image, as IPTC's AISystemUsed names it: model and provider."""
        return f"{self.model_developer} {self.model_name} via {self.display_name}"

    @property
    def uploads_references(self) -> bool:
        return self.limits.references == "upload"


@runtime_checkable
class ProviderClient(Protocol):
    """What the engine uses of a client, all of it: the calls, its traits, its counters for the cell
    report, the processing times it learned (the admission's input), and the two hooks the admission
    and the unjournaled submit window need."""

    traits: ProviderTraits
    counters: Counter[str]
    run_times: LatencyTracker

    def attach_admission(self, on_poll: Callable[[TaskSnapshot], None]) -> None: ...

    async def take_send_token(self) -> None: ...

    async def submit(self, request: GenerationRequest, *, idempotency_key: str | None = None) -> SubmittedTask: ...

    async def poll(self, task: TaskLike) -> TaskSnapshot: ...

    async def wait(self, task: TaskLike, *, deadline_s: float | None = None) -> TaskSnapshot: ...

    async def fetch_result(
        self, snapshot: TaskSnapshot, sink: BinaryIO, *, index: int | None = None
    ) -> DownloadedImage: ...

    async def cancel(self, task: TaskLike) -> CancelOutcome: ...

    async def upload_reference(self, source: bytes | Path, *, name: str | None = None) -> ReferenceImage: ...

    async def balance(self) -> Balance: ...

    async def aclose(self) -> None: ...
