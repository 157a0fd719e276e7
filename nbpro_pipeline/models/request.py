"""The provider-neutral generation request, its per-provider validation and its fingerprint.

One request type for both providers keeps the engine provider-agnostic; each client maps it onto
its own wire model. ``problems_for`` returns every problem at once (never just the first) so a
prompt table can explain each rejected row in full.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nbpro_pipeline.models.common import (
    MAX_PROMPT_CHARS,
    MAX_REFERENCES,
    MIN_PROMPT_CHARS,
    AspectRatio,
    OutputFormat,
    Provider,
    Resolution,
)


class ReferenceImage(BaseModel):
    """A reference image the provider can fetch: a Rivya Files API upload or a public http(s) URL."""

    model_config = ConfigDict(frozen=True)

    url: str
    mime_type: str | None = None
    name: str | None = None
    sha256: str | None = None  # content hash, when known: keeps fingerprints stable across re-uploads
    rivya_file_id: str | None = None  # set when the image went through Rivya's Files API


class RequestProblem(BaseModel):
    """One reason a request cannot be sent to one provider, naming the field at fault."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    field: str
    code: Literal[
        "prompt_empty",
        "prompt_too_long",
        "aspect_ratio_unsupported",
        "output_format_unsupported",
        "too_many_references",
        "reference_not_uploaded",
        "reference_url_scheme",
    ]
    message: str


class GenerationRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt: str
    aspect_ratio: AspectRatio = AspectRatio.R1_1
    resolution: Resolution = Resolution.R1K
    output_format: OutputFormat = OutputFormat.PNG
    references: tuple[ReferenceImage, ...] = Field(default=())

    def problems_for(self, provider: Provider) -> list[RequestProblem]:
        problems: list[RequestProblem] = []

        def add(field: str, code: str, message: str) -> None:
            problems.append(RequestProblem(provider=provider, field=field, code=code, message=message))

        n = len(self.prompt)
        if n < MIN_PROMPT_CHARS[provider] or not self.prompt.strip():
            add("prompt", "prompt_empty", "the prompt is empty; write what the image should show")
        elif n > MAX_PROMPT_CHARS[provider]:
            add(
                "prompt",
                "prompt_too_long",
                f"the prompt has {n} characters; {provider.value} accepts at most "
                f"{MAX_PROMPT_CHARS[provider]}; shorten it by {n - MAX_PROMPT_CHARS[provider]}",
            )
        if self.aspect_ratio is AspectRatio.AUTO and provider is Provider.ODIROUTER:
            add(
                "aspect_ratio",
                "aspect_ratio_unsupported",
                "aspect ratio 'auto' exists only on Rivya; name a ratio such as 1:1 or 16:9 for OdiRouter",
            )
        if self.output_format is not OutputFormat.PNG and provider is Provider.ODIROUTER:
            add(
                "output_format",
                "output_format_unsupported",
                "OdiRouter has no output_format parameter and always answers PNG; use png for OdiRouter",
            )
        if len(self.references) > MAX_REFERENCES[provider]:
            add(
                "references",
                "too_many_references",
                f"{len(self.references)} reference images; {provider.value} accepts at most {MAX_REFERENCES[provider]}",
            )
        for i, ref in enumerate(self.references):
            if provider is Provider.RIVYA and ref.rivya_file_id is None:
                add(
                    f"references[{i}]",
                    "reference_not_uploaded",
                    "Rivya takes reference images only through its Files API; upload it first "
                    "(RivyaClient.upload_reference)",
                )
            if not ref.url.startswith(("https://", "http://")):
                add(f"references[{i}]", "reference_url_scheme", "a reference URL must be http(s)")
        return problems

    def fingerprint(self, provider: Provider) -> str:
        """sha256 of what determines the image and the bill: same fingerprint, same paid-for result.

        References count by content hash when known, so a re-upload (new URL) keeps the fingerprint.
        """
        canonical = {
            "provider": provider.value,
            "prompt": self.prompt,
            "aspect_ratio": self.aspect_ratio.value,
            "resolution": self.resolution.value,
            "output_format": self.output_format.value,
            "references": [r.sha256 or r.url for r in self.references],
        }
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()
