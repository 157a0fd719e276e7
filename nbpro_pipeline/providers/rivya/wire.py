"""Rivya Public API v1 wire models (https://rivya.ai/docs/api), field names exactly as on the wire.

Request models forbid unknown keys: the API rejects unknown ``params`` keys, and the sandbox uses
these same models so a typo in the client fails loudly in tests instead of silently at Rivya.

Response models are the documented contract: the sandbox serves it and its tests validate answers
against it. The client does not read through them: ``providers.rivya_answers`` reads whatever plausible
shape a real server sends (providers.md section 4).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Resolution
from nbpro_pipeline.providers.rivya.traits import LIMITS, MODEL_ID

_STRICT = ConfigDict(extra="forbid")
_LENIENT = ConfigDict(extra="allow")  # responses may grow fields; never break on them

RivyaStatus = Literal["queued", "processing", "succeeded", "failed"]


class RivyaReferenceMediaItem(BaseModel):
    model_config = _STRICT

    url: str
    kind: Literal["image"] = "image"
    name: str | None = None
    mimeType: str | None = None
    durationSeconds: float | None = None
    durationToken: str | None = None


class RivyaParams(BaseModel):
    model_config = _STRICT

    aspect_ratio: AspectRatio = AspectRatio.R1_1
    resolution: Resolution = Resolution.R1K
    output_format: OutputFormat = OutputFormat.PNG
    referenceMediaItems: list[RivyaReferenceMediaItem] | None = Field(default=None, max_length=LIMITS.max_references)


class RivyaCreateRequest(BaseModel):
    model_config = _STRICT

    model: Literal["nano-banana-pro"] = MODEL_ID
    prompt: str = Field(min_length=1, max_length=LIMITS.max_prompt_chars)
    params: RivyaParams | None = None
    client_request_id: str | None = Field(default=None, max_length=128)


class RivyaTaskResult(BaseModel):
    """``{primary_url, urls}`` of a succeeded task."""

    model_config = _LENIENT

    primary_url: str
    urls: list[str]


class RivyaTaskError(BaseModel):
    model_config = _LENIENT

    code: str = "generation_failed"  # the only documented code; a bare error object still reads
    message: str = ""


class RivyaTask(BaseModel):
    """The task object: ``final_credits`` is null (or, per the docs' own example, 0) until it settles."""

    model_config = _LENIENT

    id: str
    status: RivyaStatus
    model: str | None = None
    reserved_credits: int
    final_credits: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    client_request_id: str | None = None
    result: RivyaTaskResult | None = None
    error: RivyaTaskError | None = None


class RivyaErrorBody(BaseModel):
    model_config = _LENIENT

    code: str
    message: str = ""
    requestId: str | None = None


class RivyaErrorEnvelope(BaseModel):
    model_config = _LENIENT

    error: RivyaErrorBody


class RivyaFile(BaseModel):
    model_config = _LENIENT

    id: str
    url: str
    kind: Literal["image", "video", "audio"]
    name: str | None = None
    mimeType: str
    size: int | None = None  # not needed to use the file: a reply without them still reads
    created_at: datetime | None = None


class RivyaCredits(BaseModel):
    model_config = _LENIENT

    current_credits: int


class RivyaModel(BaseModel):
    model_config = _LENIENT

    id: str
    display_name: str
    category: str
    runtime: str | None = None
    base_credits: int
    billing_type: str
    max_prompt_length: int | None = None
    params: dict | list | None = None
    api_status: str | None = None


class RivyaModelList(BaseModel):
    model_config = _LENIENT

    object: Literal["list"] = "list"
    data: list[RivyaModel]
