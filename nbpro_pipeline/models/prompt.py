"""Prompt-table rows as the pipeline sees them after validation, and why a row was turned away.

The accepted and rejected tables travel as Arrow tables (one row per prompt; a million rows must stay
cheap), so the schemas below are the contract between ``prompts`` (writer), the ``prompt_table`` asset
(which stores them as Parquet) and the engine (reader). ``PromptRow`` is the typed view of one row.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Resolution

ACCEPTED_SCHEMA = pa.schema(
    [
        pa.field("prompt_id", pa.string(), nullable=False),  # table `id`, else hash of prompt+params
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("prompt_sha256", pa.string(), nullable=False),
        pa.field("aspect_ratio", pa.string(), nullable=False),  # AspectRatio value; default 1:1
        pa.field("resolution", pa.string()),  # null: eligible at every resolution
        pa.field("output_format", pa.string(), nullable=False),  # OutputFormat value; default png
        pa.field("provider", pa.string()),  # null: eligible on every provider
        pa.field("reference_images", pa.list_(pa.string()), nullable=False),  # abs local paths or http(s) URLs
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_sha256", pa.string(), nullable=False),  # of the whole source file
        pa.field("row_number", pa.int64(), nullable=False),  # 1-based data row (header not counted)
        # the providers the row is valid for (and not restricted away from by its `provider` column)
        pa.field("eligible_providers", pa.list_(pa.string()), nullable=False),
        pa.field("extra", pa.string(), nullable=False),  # JSON object of every other column, untouched
    ]
)
# Optional table columns (kept in ``extra``) about the prompt as a work: a row whose ``share_prompt`` is
# true/yes/1 lets its prompt, and its ``prompt_writer``, into the image's IPTC metadata (docs/provenance.md)
SHARE_PROMPT_COLUMN = "share_prompt"
PROMPT_WRITER_COLUMN = "prompt_writer"
_YES = frozenset({"true", "yes", "y", "1"})
MAX_PROMPT_WRITER = 200

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("row_number", pa.int64()),  # null when the whole file is at fault
        pa.field("prompt_id", pa.string()),
        pa.field("provider", pa.string()),  # null: rejected for every provider
        pa.field("column", pa.string()),  # the column at fault, when one is
        pa.field("code", pa.string(), nullable=False),  # machine-readable reason, e.g. prompt_too_long
        pa.field("message", pa.string(), nullable=False),  # what is wrong and what to do
    ]
)


def count_eligible(eligible_providers: pa.ChunkedArray | pa.Array, into: dict[str, int] | None = None) -> dict:
    """Rows valid for each provider, from an ``eligible_providers`` column (added to ``into`` if given)."""
    counts = dict(into or {})
    chunks = eligible_providers.chunks if isinstance(eligible_providers, pa.ChunkedArray) else [eligible_providers]
    for chunk in chunks:
        found = pc.value_counts(pc.list_flatten(chunk))
        for name, n in zip(found.field("values").to_pylist(), found.field("counts").to_pylist(), strict=True):
            counts[name] = counts.get(name, 0) + n
    return counts


class PromptRow(BaseModel):
    """One accepted prompt; the engine turns it into a ``GenerationRequest`` for one cell."""

    model_config = ConfigDict(frozen=True)

    prompt_id: str
    prompt: str
    prompt_sha256: str
    aspect_ratio: AspectRatio = AspectRatio.R1_1
    resolution: Resolution | None = None
    output_format: OutputFormat = OutputFormat.PNG
    provider: str | None = None
    reference_images: tuple[str, ...] = ()
    source_uri: str
    source_sha256: str
    row_number: int
    eligible_providers: tuple[str, ...] | None = None  # None (a row made by hand): every provider
    extra: str = "{}"

    def eligible_for(self, provider: str, resolution: Resolution) -> bool:
        """Valid for ``provider`` and not restricted to another provider or resolution by the table; the
        client still checks each request against its provider's limits before sending."""
        return (
            (self.eligible_providers is None or str(provider) in self.eligible_providers)
            and (self.provider is None or self.provider == str(provider))
            and (self.resolution is None or self.resolution is resolution)
        )

    @property
    def extra_columns(self) -> dict[str, Any]:
        return json.loads(self.extra)

    @property
    def shares_prompt(self) -> bool:
        """The table lets this prompt travel in the image's standard metadata; anything but a clear yes
        (a missing column included) keeps it private."""
        return str(self.extra_columns.get(SHARE_PROMPT_COLUMN, "")).strip().lower() in _YES

    @property
    def prompt_writer(self) -> str | None:
        """Who wrote the prompt, as the table names them (``prompt_writer``), bounded."""
        value = self.extra_columns.get(PROMPT_WRITER_COLUMN)
        text = " ".join(str(value).split())[:MAX_PROMPT_WRITER] if value is not None else ""
        return text or None

    @classmethod
    def from_table(cls, table: pa.Table) -> list[PromptRow]:
        return [cls.model_validate(r) for r in table.to_pylist()]


class RejectedRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    source_uri: str
    row_number: int | None
    prompt_id: str | None = None
    provider: str | None = None
    column: str | None = None
    code: str
    message: str

    def describe(self) -> str:
        where = self.source_uri + (f", row {self.row_number}" if self.row_number is not None else "")
        where += f", column {self.column!r}" if self.column else ""
        scope = f" (for {self.provider} only)" if self.provider else ""
        return f"{where}: {self.code}{scope}: {self.message}"
