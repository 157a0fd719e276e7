"""OdiRouter model-API wire models (fal-style queue; gaps filled from SeaCloud's identical format).

The submit body is the parameter object itself. ``resolution`` and ``image_size`` are two names for
the same knob; the sandbox rejects a body that sets both to different values.

Response models are the documented contract (and fal.ai's ``{"images": [...], "description"}`` shape
for this model): the sandbox serves them and its tests validate answers against them. The client does
not read through them: ``providers.odirouter_answers`` reads whatever plausible shape a fal-style queue
sends (providers.md section 4). The error envelopes are read here (``OdiGatewayError``,
``OdiDetailError``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from nbpro_pipeline.models.common import AspectRatio, Resolution
from nbpro_pipeline.providers.odirouter.traits import LIMITS

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

    prompt: str = Field(min_length=1, max_length=LIMITS.max_prompt_chars)
    image_urls: list[str] | None = Field(default=None, max_length=LIMITS.max_references)
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
    response_url: str | None = None
    status_url: str | None = None
    cancel_url: str | None = None
    queue_position: int | None = None


class OdiStatus(BaseModel):
    model_config = _LENIENT

    status: OdiQueueStatus
    request_id: str
    response_url: str | None = None
    queue_position: int | None = None
    metrics: dict | None = None
    error: str | None = None
    # Any string: an error type not in OdiErrorType still marks a failure, it must not break the read.
    error_type: str | None = None

    @field_validator("error", mode="before")
    @classmethod
    def _error_as_text(cls, value: Any) -> Any:
        """fal-style services may send the error as an object or list; keep it readable as text."""
        return value if value is None or isinstance(value, str) else json.dumps(value)[:1000]


class OdiImageFile(BaseModel):
    """One result image: an ``outputs`` part without its ``type``, and exactly fal's image object.
    Only ``url`` is required; fal sends ``width``/``height`` as null for this model at times."""

    model_config = _LENIENT

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None


class OdiImageOutput(OdiImageFile):
    type: Literal["image"] = "image"


class OdiTextOutput(BaseModel):
    model_config = _LENIENT

    type: Literal["text"]
    text: str = ""


class OdiOtherOutput(BaseModel):
    """An output part of a type this client does not use (carried, not refused)."""

    model_config = _LENIENT

    type: str | None = None


def _output_kind(part: Any) -> str:
    kind = part.get("type") if isinstance(part, dict) else getattr(part, "type", None)
    return kind if kind in ("image", "text") else "other"


OdiOutput = Annotated[
    Annotated[OdiImageOutput, Tag("image")]
    | Annotated[OdiTextOutput, Tag("text")]
    | Annotated[OdiOtherOutput, Tag("other")],
    Discriminator(_output_kind),
]


class OdiResult(BaseModel):
    """The response endpoint's answer, in either known shape:

    documented: ``{request_id, outputs: [{type: "image", url, ...}, {type: "text", text}], metadata}``;
    fal.ai: ``{images: [{url, content_type, file_name, file_size, width, height}], description}``.
    """

    model_config = _LENIENT

    request_id: str | None = None
    outputs: list[OdiOutput] | None = None
    fal_images: list[OdiImageFile] | None = Field(default=None, alias="images")
    description: str | None = None
    metadata: dict = Field(default_factory=dict)


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


class OdiValidationIssue(BaseModel):
    """One item of a FastAPI-style 422 ``detail`` list."""

    model_config = _LENIENT

    loc: list[str | int] = Field(default_factory=list)
    msg: str = ""
    type: str | None = None

    def describe(self) -> str:
        """``prompt: Field required``; ``body`` (FastAPI's root) is left out, indexes as ``[i]``."""
        where = ""
        for part in self.loc:
            if part == "body" and not where:
                continue
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        text = self.msg or self.type or "invalid"
        return f"{where}: {text}" if where else text


class OdiDetailError(BaseModel):
    """The application envelope ``{"detail": ...}``: a string, or FastAPI's list of issues."""

    model_config = _LENIENT

    detail: str | list[OdiValidationIssue | str | Any] | dict

    def describe(self) -> str:
        """One readable line naming every offending field."""
        if isinstance(self.detail, str):
            return self.detail
        if isinstance(self.detail, dict):
            return json.dumps(self.detail)[:300]
        parts = [d.describe() if isinstance(d, OdiValidationIssue) else str(d) for d in self.detail]
        return "; ".join(parts) or "validation failed"
