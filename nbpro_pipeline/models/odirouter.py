"""OdiRouter model-API wire models (fal-style queue; gaps filled from SeaCloud's identical format).

The submit body is the parameter object itself. ``resolution`` and ``image_size`` are two names for
the same knob; the sandbox rejects a body that sets both to different values.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from nbpro_pipeline.models.common import (
    AspectRatio,
    Provider,
    Resolution,
    TaskState,
)
from nbpro_pipeline.models.limits import MAX_PROMPT_CHARS, MAX_REFERENCES

_STRICT = ConfigDict(extra="forbid")
_LENIENT = ConfigDict(extra="allow")

OdiQueueStatus = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
OdiErrorType = Literal[
    "INFERENCE_FAILURE",
    "INFERENCE_TIMEOUT",
    "REQUEST_INVALID",
    "CONTENT_BLOCKED",
    "CANCELED",
    "INTERNAL_SERVER_ERROR",
]
ODI_ERROR_TYPES: tuple[str, ...] = OdiErrorType.__args__  # type: ignore[attr-defined]

FixedAspectRatio = Literal["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]


class OdiSubmitRequest(BaseModel):
    model_config = _STRICT

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS[Provider.ODIROUTER])
    image_urls: list[str] | None = Field(default=None, max_length=MAX_REFERENCES[Provider.ODIROUTER])
    aspect_ratio: FixedAspectRatio | None = None
    resolution: Resolution | None = None
    image_size: Resolution | None = None
    response_modalities: list[Literal["Text", "Image"]] | None = None

    def effective_resolution(self) -> Resolution:
        return self.resolution or self.image_size or Resolution.R1K

    def effective_aspect_ratio(self) -> AspectRatio | None:
        return AspectRatio(self.aspect_ratio) if self.aspect_ratio else None


class OdiSubmitResponse(BaseModel):
    model_config = _LENIENT

    request_id: str
    response_url: str
    status_url: str
    cancel_url: str
    queue_position: int | None = None


class OdiStatus(BaseModel):
    model_config = _LENIENT

    status: OdiQueueStatus
    request_id: str
    response_url: str | None = None
    queue_position: int | None = None
    metrics: dict | None = None
    error: str | None = None
    error_type: OdiErrorType | None = None

    @property
    def state(self) -> TaskState:
        if self.status == "IN_QUEUE":
            return TaskState.QUEUED
        if self.status == "IN_PROGRESS":
            return TaskState.RUNNING
        return TaskState.FAILED if (self.error_type or self.error) else TaskState.SUCCEEDED


class OdiImageOutput(BaseModel):
    model_config = _LENIENT

    type: Literal["image"]
    url: str
    content_type: str
    file_name: str
    file_size: int | None = None
    width: int
    height: int


class OdiTextOutput(BaseModel):
    model_config = _LENIENT

    type: Literal["text"]
    text: str


OdiOutput = Annotated[OdiImageOutput | OdiTextOutput, Field(discriminator="type")]


class OdiResult(BaseModel):
    model_config = _LENIENT

    request_id: str
    outputs: list[OdiOutput]
    metadata: dict = Field(default_factory=dict)

    @property
    def images(self) -> list[OdiImageOutput]:
        return [o for o in self.outputs if isinstance(o, OdiImageOutput)]


class OdiCancelResponse(BaseModel):
    model_config = _LENIENT

    status: Literal["CANCELLATION_REQUESTED", "ALREADY_COMPLETED", "NOT_FOUND"]


class OdiGatewayErrorBody(BaseModel):
    model_config = _LENIENT

    code: str
    message: str = ""


class OdiGatewayError(BaseModel):
    model_config = _LENIENT

    error: OdiGatewayErrorBody
    request_id: str | None = None


class OdiDetailError(BaseModel):
    model_config = _LENIENT

    detail: str | list | dict
