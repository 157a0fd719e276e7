"""A sandbox task and its clock-driven lifecycle, shared by both provider emulations.

A task stores only what was decided when it was created (durations, outcome, faults) plus the few
events that can interrupt it (a cancel, the first result URL minted); its state at any instant is a
pure function of the clock. So a poll never has to "advance" anything, and a server restarted on the
same state directory resumes every task exactly where the clock says it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Resolution, pixel_size


class Phase(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELED)


FAILURE_MESSAGES: dict[str, str] = {
    "INFERENCE_FAILURE": "the model failed to produce an image (sandbox fault injection)",
    "INFERENCE_TIMEOUT": "inference did not finish in time (sandbox fault injection)",
    "REQUEST_INVALID": "the request was rejected by the model (sandbox fault injection)",
    "CONTENT_BLOCKED": "the prompt or output was blocked by the safety filter (sandbox fault injection)",
    "INTERNAL_SERVER_ERROR": "an internal error occurred while generating (sandbox fault injection)",
    "CANCELED": "the request was canceled by the user",
}


@dataclass(slots=True)
class SandboxTask:
    provider: str  # rivya or odirouter; a plain str keeps the JSON round trip trivial
    id: str
    created_at: float  # unix seconds
    queue_s: float
    processing_s: float
    prompt: str
    aspect_ratio: str  # the fixed ratio the image is rendered at ("auto" already resolved)
    requested_aspect_ratio: str | None  # what the caller asked for (None: left to the default)
    resolution: str
    output_format: str
    price: int  # credits (Rivya) or micro-dollars (OdiRouter), fixed at creation
    failure: str | None = None  # OdiRouter error type; None = the task succeeds
    stuck: bool = False
    corrupt_image: bool = False
    corrupt_variant: float = 0.0
    wrong_size: bool = False
    last_url_expired: bool = False  # the expired_url fault struck the last mint: the next one is valid
    text_output: bool = False  # OdiRouter: response_modalities asked for Text
    reference_urls: list[str] = field(default_factory=list)
    client_request_id: str | None = None
    idempotency_key: str | None = None
    canceled_at: float | None = None
    canceled_while: str | None = None  # Phase value at cancel time: decides whether it is billed
    settled: bool = False
    # Set when created in mutation mode: the (seed-independent) key its per-task mutation plan derives from
    mutation_key: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def started_at(self) -> float:
        return self.created_at + self.queue_s

    @property
    def finishes_at(self) -> float | None:
        """When the task becomes terminal on its own (None: stuck forever); a cancel can come first."""
        if self.canceled_at is not None:
            return self.canceled_at
        if self.stuck:
            return None
        return self.created_at + self.queue_s + self.processing_s

    def phase(self, now: float) -> Phase:
        if self.canceled_at is not None and now >= self.canceled_at:
            return Phase.CANCELED
        if now < self.started_at:
            return Phase.QUEUED
        end = self.finishes_at
        if end is None or now < end:
            return Phase.PROCESSING
        return Phase.FAILED if self.failure else Phase.SUCCEEDED

    def updated_at(self, now: float) -> float:
        """Time of the latest state change at ``now``."""
        phase = self.phase(now)
        if phase is Phase.QUEUED:
            return self.created_at
        if phase is Phase.PROCESSING:
            return self.started_at
        return self.finishes_at  # type: ignore[return-value]

    # --- output ----------------------------------------------------------------------------------

    @property
    def requested_size(self) -> tuple[int, int]:
        return pixel_size(self.aspect_ratio, self.resolution)

    @property
    def served_size(self) -> tuple[int, int]:
        """The size actually delivered: the table size, unless the wrong_size fault struck.

        2K/4K come back at 1K (the known real-world defect); 1K comes back at the next ratio's 1K size.
        """
        if not self.wrong_size:
            return self.requested_size
        aspect = AspectRatio(self.aspect_ratio)
        if Resolution(self.resolution) is not Resolution.R1K:
            return pixel_size(aspect, Resolution.R1K)
        fixed = [a for a in AspectRatio if a is not AspectRatio.AUTO]
        return pixel_size(fixed[(fixed.index(aspect) + 1) % len(fixed)], Resolution.R1K)

    @property
    def output(self) -> OutputFormat:
        return OutputFormat(self.output_format)

    # --- persistence -----------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies recursively and showed up in benchmark profiles.
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SandboxTask:
        return cls(**record)


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(SandboxTask))
