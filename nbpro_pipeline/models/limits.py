"""What a provider accepts in a request, in the terms both validators need.

Prompt validation (``prompts.validate``, columnar, every rule at once) and the clients' local request
check (``GenerationRequest.problems_for``, called before any money moves) both read a provider's
``ProviderTraits.limits``, so a limit changes in one place: its provider's package.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nbpro_pipeline.models.common import OutputFormat


class ProviderLimits(BaseModel):
    """Limits from providers.md, in the terms both validators need."""

    model_config = ConfigDict(frozen=True)

    display_name: str = Field(description="how messages name the provider")
    min_prompt_chars: int = Field(default=1, ge=0)
    max_prompt_chars: int = Field(ge=1)
    max_references: int = Field(ge=0)
    aspect_auto: bool = Field(description="aspect ratio 'auto' (the model picks) is accepted")
    output_formats: tuple[OutputFormat, ...] = Field(description="formats the provider can answer in")
    references: Literal["upload", "url"] = Field(
        description="upload: references go through the provider's files API (local files are fine); "
        "url: the provider fetches http(s) URLs itself"
    )
    max_reference_bytes: int = Field(default=30 * 1024 * 1024, ge=1, description="one reference image, at most")
