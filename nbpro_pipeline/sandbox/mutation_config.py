"""The knobs of mutation mode (``SandboxConfig.wire.mutations``): which plausible variations, how often.

Kept apart from the families themselves (``mutations``) so the config tree imports nothing but pydantic.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

FamilyName = Literal[
    "state_words",
    "number_strings",
    "missing_fields",
    "image_location",
    "returned_urls",
    "read_lag",
    "minimal_create",
    "stated_cost",
    "error_envelopes",
    "extra_fields",
]
FAMILY_NAMES: tuple[str, ...] = get_args(FamilyName)


class MutationConfig(BaseModel):
    """Off while ``seed`` is None (the documented answers, untouched); on, every answer of a task
    created meanwhile is varied with probability ``rate`` by families drawn from ``families``.

    ``read_lag_min_s``/``read_lag_max_s`` bound how long a lagging task answers 404 after its create;
    ``undocumented_words`` is how often a non-terminal state is spelled with a word no doc names.
    """

    model_config = ConfigDict(extra="forbid")

    seed: int | None = None
    rate: float = Field(default=0.6, ge=0.0, le=1.0)
    families: set[FamilyName] = Field(default_factory=lambda: set(FAMILY_NAMES))
    read_lag_min_s: float = Field(default=0.05, ge=0.0)
    read_lag_max_s: float = Field(default=0.5, ge=0.0)
    undocumented_words: float = Field(default=0.15, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _lag_bounds_ordered(self) -> MutationConfig:
        if self.read_lag_max_s < self.read_lag_min_s:
            raise ValueError(f"read_lag_max_s ({self.read_lag_max_s}) is below read_lag_min_s ({self.read_lag_min_s})")
        return self

    @field_serializer("families")
    def _sorted_families(self, families: set[str]) -> list[str]:
        return sorted(families)  # a stable GET /_sandbox/config
