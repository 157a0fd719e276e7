"""Rivya Public API v1 wire models (https://rivya.ai/docs/api), field names exactly as on the wire.

Request models forbid unknown keys: the API rejects unknown ``params`` keys, and the sandbox uses
these same models so a typo in the client fails loudly in tests instead of silently at Rivya.

Response models read tolerantly (providers.md section 4): unknown keys anywhere are kept, never an
error, and ``final_credits`` may be 0 rather than null before a task settles (the docs' own create
example shows 0), so only a terminal task's ``final_credits`` means anything (``settled_credits``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nbpro_pipeline.models.common import (
    RIVYA_MODEL_ID,
    AspectRatio,
    OutputFormat,
    Provider,
    Resolution,
    TaskState,
)
from nbpro_pipeline.models.limits import MAX_PROMPT_CHARS, MAX_REFERENCES

_STRICT = ConfigDict(extra="forbid")
_LENIENT = ConfigDict(extra="allow")  # responses may grow fields; never break on them

RivyaStatus = Literal["queued", "processing", "succeeded", "failed"]

RIVYA_STATE: dict[str, TaskState] = {
    "queued": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "succeeded": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


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
    referenceMediaItems: list[RivyaReferenceMediaItem] | None = Field(
        default=None, max_length=MAX_REFERENCES[Provider.RIVYA]
    )


class RivyaCreateRequest(BaseModel):
    model_config = _STRICT

    model: Literal["nano-banana-pro"] = RIVYA_MODEL_ID
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS[Provider.RIVYA])
    params: RivyaParams | None = None
    client_request_id: str | None = Field(default=None, max_length=128)


class RivyaTaskResult(BaseModel):
    """``{primary_url, urls}``; either may be missing on an unexpected answer, which ``image_urls``
    then reports as empty so the client can fail loudly instead of guessing."""

    model_config = _LENIENT

    primary_url: str | None = None
    urls: list[str] = Field(default_factory=list)

    def image_urls(self) -> list[str]:
        """Primary first, then the others, no duplicates, only http(s) URLs a download can use."""
        ordered = [self.primary_url, *self.urls] if self.primary_url else list(self.urls)
        return [u for u in dict.fromkeys(ordered) if u.startswith(("http://", "https://"))]


class RivyaTaskError(BaseModel):
    model_config = _LENIENT

    code: str = "generation_failed"  # the only documented code; a bare error object still reads
    message: str = ""


class RivyaTaskHead(BaseModel):
    """The task object without ``result``/``error``: what the client still needs (id, status, credits)
    to book a finished task when the rest of the body has a shape it does not know."""

    model_config = _LENIENT

    id: str
    status: RivyaStatus
    model: str | None = None
    reserved_credits: int = 0
    final_credits: int | None = None  # null (or, per the docs' example, 0) until the task settles
    created_at: datetime | None = None
    updated_at: datetime | None = None
    client_request_id: str | None = None

    @property
    def state(self) -> TaskState:
        return RIVYA_STATE[self.status]

    @property
    def settled_credits(self) -> int | None:
        """``final_credits`` once the task is terminal; None before, whatever the wire said."""
        return self.final_credits if self.state.terminal else None

    @property
    def run_s(self) -> float | None:
        """Rivya stamps the terminal transition: seconds from creation to the end, when both are given."""
        if not self.state.terminal or self.created_at is None or self.updated_at is None:
            return None
        return (self.updated_at - self.created_at).total_seconds()


class RivyaTask(RivyaTaskHead):
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
