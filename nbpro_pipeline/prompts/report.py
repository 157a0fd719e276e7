"""What ``nbpro validate`` prints: a summary per file, rejections by reason, one line per rejected row."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from nbpro_pipeline.models.prompt import RejectedRow
from nbpro_pipeline.prompts.result import PromptTableSummary
from nbpro_pipeline.providers.registry import PROVIDERS

EXIT_OK, EXIT_REJECTED, EXIT_UNREADABLE = 0, 1, 2


def exit_code(result: PromptTableSummary) -> int:
    """0: every row valid for every provider it can go to; 1: some rows rejected; 2: a file unreadable."""
    if result.unreadable or any(n is None for n in result.rejected.column("row_number").to_pylist()):
        return EXIT_UNREADABLE
    return EXIT_REJECTED if result.rejected.num_rows else EXIT_OK


def _by_reason(rows: list[RejectedRow]) -> dict[str, dict[str, int]]:
    per_file: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        per_file[row.source_uri][row.code] += 1
    return {uri: dict(c.most_common()) for uri, c in per_file.items()}


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in counts.items())


def render_text(result: PromptTableSummary, limit: int) -> str:
    rows = result.rejected_rows()
    by_file = _by_reason(rows)
    lines = []
    for s in result.sources:
        if s.error is not None:
            lines.append(f"{s.uri}: UNREADABLE: {s.error}")
            continue
        line = f"{s.uri} ({s.format}, sha256 {s.sha256[:12]}): {s.rows_read} rows, {s.accepted} accepted"
        line += f", {s.rejected} rejected"
        if s.uri in by_file:
            line += f"; {s.rejections} rejection(s): {_reasons(by_file[s.uri])}"
        lines.append(line)
    eligible = result.eligible_counts
    readable = [s for s in result.sources if s.error is None]
    lines.append(
        f"total: {result.rows_read} rows in {len(readable)} file(s): {result.accepted_rows} accepted "
        f"(valid for {', '.join(f'{p} {eligible.get(p, 0)}' for p in PROVIDERS.names())}), "
        f"{result.rows_read - result.accepted_rows} rejected outright, {len(rows)} rejection(s)"
        + (f", {len(result.unreadable)} unreadable file(s)" if result.unreadable else "")
    )
    if rows:
        lines.append(f"rejected by reason: {_reasons(result.rejected_by_reason())}")
        lines.extend(row.describe() for row in rows[:limit])
        if len(rows) > limit:
            lines.append(f"... and {len(rows) - limit} more")
    return "\n".join(lines)


def render_json(result: PromptTableSummary, limit: int) -> dict[str, Any]:
    rows = result.rejected_rows()
    by_file = _by_reason(rows)
    return {
        "exit_code": exit_code(result),
        "rows_read": result.rows_read,
        "accepted": result.accepted_rows,
        "eligible": result.eligible_counts,
        "rejected_by_reason": result.rejected_by_reason(),
        "sources": [{**s.model_dump(), "rejected_by_reason": by_file.get(s.uri, {})} for s in result.sources],
        "rejected_total": len(rows),
        "rejected": [{**r.model_dump(mode="json"), "description": r.describe()} for r in rows[:limit]],
    }
