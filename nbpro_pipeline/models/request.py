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

from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Resolution
from nbpro_pipeline.models.limits import ProviderLimits


class ReferenceImage(BaseModel):
    """A reference image the provider can fetch: an upload to its files API, or a public http(s) URL."""

    model_config = ConfigDict(frozen=True)

    url: str
    mime_type: str | None = None
    name: str | None = None
    sha256: str | None = None  # content hash, when known: keeps fingerprints stable across re-uploads
    file_id: str | None = None  # set when the image went through the provider's files API


class RequestProblem(BaseModel):
    """One reason a request cannot be sent to one provider, naming the field at fault."""

    model_config = ConfigDict(frozen=True)

    provider: str
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

    def problems_for(self, provider: str, lim: ProviderLimits) -> list[RequestProblem]:
        """Every reason ``provider`` would refuse this request, read from its limits (its traits')."""
        problems: list[RequestProblem] = []

        def add(field: str, code: str, message: str) -> None:
            problems.append(RequestProblem(provider=str(provider), field=field, code=code, message=message))

        name = lim.display_name
        n = len(self.prompt)
        if n < lim.min_prompt_chars or not self.prompt.strip():
            add("prompt", "prompt_empty", "the prompt is empty; write what the image should show")
        elif n > lim.max_prompt_chars:
            add(
                "prompt",
                "prompt_too_long",
                f"the prompt has {n} characters; {provider} accepts at most "
                f"{lim.max_prompt_chars}; shorten it by {n - lim.max_prompt_chars}",
            )
        if self.aspect_ratio is AspectRatio.AUTO and not lim.aspect_auto:
            add(
                "aspect_ratio",
                "aspect_ratio_unsupported",
                f"aspect ratio 'auto' is not accepted by {name}; name a ratio such as 1:1 or 16:9 for {name}",
            )
        if self.output_format not in lim.output_formats:
            allowed = ", ".join(f.value for f in lim.output_formats)
            add(
                "output_format",
                "output_format_unsupported",
                f"{name} has no {self.output_format.value} output and answers {allowed}; use {allowed} for {name}",
            )
        if len(self.references) > lim.max_references:
            add(
                "references",
                "too_many_references",
                f"{len(self.references)} reference images; {provider} accepts at most {lim.max_references}",
            )
        for i, ref in enumerate(self.references):
            if lim.references == "upload" and ref.file_id is None:
                add(
                    f"references[{i}]",
                    "reference_not_uploaded",
                    f"{name} takes reference images only through its files API; upload it first "
                    "(the client's upload_reference)",
                )
            if not ref.url.startswith(("https://", "http://")):
                add(f"references[{i}]", "reference_url_scheme", "a reference URL must be http(s)")
        return problems

    def fingerprint(self, provider: str) -> str:
        """sha256 of what determines the image and the bill: same fingerprint, same paid-for result.

        References count by content hash when known, so a re-upload (new URL) keeps the fingerprint.
        """
        canonical = {
            "provider": str(provider),
            "prompt": self.prompt,
            "aspect_ratio": self.aspect_ratio.value,
            "resolution": self.resolution.value,
            "output_format": self.output_format.value,
            "references": [r.sha256 or r.url for r in self.references],
        }
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()
