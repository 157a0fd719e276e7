"""Prompt-table rows as the pipeline sees them after validation, and why a row was turned away.

The accepted and rejected tables travel as Arrow tables (one row per prompt; a million rows must stay
cheap), so the schemas below are the contract between ``prompts`` (writer), the ``prompt_table`` asset
(which stores them as Parquet) and the engine (reader). ``PromptRow`` is the typed view of one row.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.models.common import AspectRatio, OutputFormat, Provider, Resolution

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
        pa.field("eligible_rivya", pa.bool_(), nullable=False),  # valid for Rivya (and not restricted away)
        pa.field("eligible_odirouter", pa.bool_(), nullable=False),
        pa.field("extra", pa.string(), nullable=False),  # JSON object of every other column, untouched
    ]
)

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


class PromptRow(BaseModel):
    """One accepted prompt; the engine turns it into a ``GenerationRequest`` for one cell."""

    model_config = ConfigDict(frozen=True)

    prompt_id: str
    prompt: str
    prompt_sha256: str
    aspect_ratio: AspectRatio = AspectRatio.R1_1
    resolution: Resolution | None = None
    output_format: OutputFormat = OutputFormat.PNG
    provider: Provider | None = None
    reference_images: tuple[str, ...] = ()
    source_uri: str
    source_sha256: str
    row_number: int
    eligible_rivya: bool = True
    eligible_odirouter: bool = True
    extra: str = "{}"

    def eligible_for(self, provider: Provider | str, resolution: Resolution) -> bool:
        """Valid for ``provider`` and not restricted to another provider or resolution by the table.
        A provider validation does not know (a test's fake) takes every row not restricted elsewhere;
        its client checks each request against its own limits before sending."""
        ok = {Provider.RIVYA: self.eligible_rivya, Provider.ODIROUTER: self.eligible_odirouter}.get(provider, True)
        return (
            ok
            and (self.provider is None or str(self.provider) == str(provider))
            and (self.resolution is None or self.resolution is resolution)
        )

    @property
    def extra_columns(self) -> dict[str, Any]:
        return json.loads(self.extra)

    @classmethod
    def from_table(cls, table: pa.Table) -> list[PromptRow]:
        return [cls.model_validate(r) for r in table.to_pylist()]


class RejectedRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    source_uri: str
    row_number: int | None
    prompt_id: str | None = None
    provider: Provider | None = None
    column: str | None = None
    code: str
    message: str

    def describe(self) -> str:
        where = self.source_uri + (f", row {self.row_number}" if self.row_number is not None else "")
        where += f", column {self.column!r}" if self.column else ""
        scope = f" (for {self.provider.value} only)" if self.provider else ""
        return f"{where}: {self.code}{scope}: {self.message}"
