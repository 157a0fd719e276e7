"""What reading prompt tables produces: the accepted and rejected Arrow tables and one summary per file."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.models.prompt import ACCEPTED_SCHEMA, REJECTED_SCHEMA, RejectedRow, count_eligible


class PromptTableError(Exception):
    """No prompt could be read at all: no sources, a glob matching nothing, or every source unreadable.

    A single unreadable file among readable ones is not raised; it becomes a file-level rejected row.
    """


class SourceFile(BaseModel):
    """One table file that was read (or tried): where it is, what it held, and how its rows fared.

    ``accepted + rejected == rows_read``: ``accepted`` counts rows eligible for at least one provider
    (they may still have a rejection for the other one), ``rejected`` rows eligible for none.
    ``rejections`` counts this file's entries in the rejected table (one per row and provider at most,
    plus file-level entries). ``error`` is set when the file could not be read at all.
    """

    model_config = ConfigDict(frozen=True)

    uri: str
    format: str | None  # csv, tsv, csv.gz, tsv.gz, parquet; None when the extension is unknown
    sha256: str | None  # of the file bytes as stored; None when the file could not be read
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    rejections: int = 0
    error: str | None = None


class PromptTableSummary(BaseModel):
    """What one load found, without the accepted rows themselves (``write_prompt_tables`` streams those
    to storage): the rejected table, one summary per file, and counts."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    rejected: pa.Table  # REJECTED_SCHEMA
    sources: list[SourceFile]
    rows_read: int
    accepted_rows: int
    eligible: dict[str, int]  # accepted rows valid for each provider (before restriction by a ``provider`` column)

    def rejected_by_reason(self) -> dict[str, int]:
        """Rejection entries per code, most frequent first."""
        return dict(Counter(self.rejected.column("code").to_pylist()).most_common())

    def rejected_rows(self) -> list[RejectedRow]:
        return [RejectedRow.model_validate(r) for r in self.rejected.to_pylist()]

    @property
    def unreadable(self) -> list[SourceFile]:
        """Files that could not be read (each also has a file-level row in ``rejected``)."""
        return [s for s in self.sources if s.error is not None]

    @property
    def eligible_counts(self) -> dict[str, int]:
        return dict(self.eligible)

    def model_post_init(self, _context: object) -> None:
        if not self.rejected.schema.equals(REJECTED_SCHEMA):
            raise ValueError("rejected table does not have REJECTED_SCHEMA")


class WrittenPromptTables(PromptTableSummary):
    """``write_prompt_tables``: the summary, and where the accepted and rejected tables were written."""

    accepted_uri: str
    rejected_uri: str


class PromptTableResult(PromptTableSummary):
    """``load_prompt_tables``: the summary and the accepted rows in memory."""

    accepted: pa.Table  # ACCEPTED_SCHEMA

    @property
    def eligible_counts(self) -> dict[str, int]:
        """Accepted rows valid for each provider (before restriction by a ``provider`` column)."""
        return count_eligible(self.accepted.column("eligible_providers"))

    def model_post_init(self, _context: object) -> None:
        super().model_post_init(_context)
        if not self.accepted.schema.equals(ACCEPTED_SCHEMA):
            raise ValueError("accepted table does not have ACCEPTED_SCHEMA")
