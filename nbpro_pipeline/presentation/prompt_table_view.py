"""What a ``prompt_table`` materialization shows: rejections by reason, the first rejections, the sources.

Every value here (file names, ids, column names, the cell values quoted in messages) is table text, so it
goes through ``presentation.markdown``.
"""

from __future__ import annotations

from nbpro_pipeline.models.prompt import RejectedRow
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.prompts.result import PromptTableSummary

FIRST_REJECTIONS = 20


def prompt_table_markdown(result: PromptTableSummary) -> dict[str, str]:
    """Markdown metadata by name: ``rejected_by_reason``, ``rejections`` (the first few), ``sources``."""
    first = result.rejected.slice(0, FIRST_REJECTIONS).to_pylist()
    sources = [
        [md.text(s.uri), md.text(s.format or "unknown"), str(s.rows_read), md.text((s.sha256 or "unreadable")[:16])]
        for s in result.sources
    ]
    return {
        "rejected_by_reason": md.counts_table(result.rejected_by_reason(), "reason"),
        "rejections": md.bullets(RejectedRow.model_validate(r).describe() for r in first),
        "sources": md.table(["file", "format", "rows", "sha256"], sources, "llrl"),
    }
