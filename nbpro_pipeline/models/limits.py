"""What each provider accepts in a request: the one limits table.

Prompt validation (``prompts.validate``, columnar, every rule at once) and the clients' local request
check (``GenerationRequest.problems_for``, called before any money moves) both read this table, so a
limit changes in one place. A provider's ``ProviderTraits.limits`` is its row here; a provider the
project does not ship (a test's fake) brings its own ``ProviderLimits``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nbpro_pipeline.models.common import OutputFormat, Provider


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


PROVIDER_LIMITS: dict[Provider, ProviderLimits] = {
    Provider.RIVYA: ProviderLimits(
        display_name="Rivya",
        max_prompt_chars=10_000,
        max_references=8,
        aspect_auto=True,
        output_formats=(OutputFormat.PNG, OutputFormat.JPG),
        references="upload",
    ),
    Provider.ODIROUTER: ProviderLimits(
        display_name="OdiRouter",
        max_prompt_chars=2_500,
        max_references=14,
        aspect_auto=False,
        output_formats=(OutputFormat.PNG,),
        references="url",
    ),
}

# Views of the table for the wire models' field bounds (pydantic ``max_length``), never separate numbers.
MAX_PROMPT_CHARS: dict[Provider, int] = {p: lim.max_prompt_chars for p, lim in PROVIDER_LIMITS.items()}
MIN_PROMPT_CHARS: dict[Provider, int] = {p: lim.min_prompt_chars for p, lim in PROVIDER_LIMITS.items()}
MAX_REFERENCES: dict[Provider, int] = {p: lim.max_references for p, lim in PROVIDER_LIMITS.items()}
