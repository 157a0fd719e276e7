"""An asset check's outcome as plain data: ``assets_defs`` turns each into an ``AssetCheckResult``."""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

from pydantic import BaseModel, Field


class Severity(StrEnum):
    WARN = "WARN"
    ERROR = "ERROR"


class CheckOutcome(BaseModel):
    name: str  # the asset check's name
    passed: bool
    severity: Severity = Severity.ERROR
    description: str  # shown as markdown: table text in it goes through ``presentation.markdown``
    metadata: dict[str, int | float | str] = Field(default_factory=dict)  # plain values: numbers plot
    markdown: dict[str, str] = Field(default_factory=dict)  # rendered as markdown metadata

    def for_cell(self, cell: str) -> CheckOutcome:
        """This outcome with its cell named first in the description and in the metadata."""
        return self.model_copy(
            update={"description": f"{cell}: {self.description}", "metadata": {"cell": cell, **self.metadata}}
        )


def count_phrase(counts: Counter) -> str:
    """``3 size_mismatch, 1 corrupt_image``: counts in a description, the most common first."""
    return ", ".join(f"{n} {code}" for code, n in counts.most_common())
