"""Small helpers shared by the prompt-table tests."""

from __future__ import annotations

import io

from PIL import Image

from nbpro_pipeline.prompts import PromptTableResult


def png_bytes(size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def rejections(result: PromptTableResult) -> list[tuple[int | None, str | None, str | None, str]]:
    """(row_number, provider, column, code) of every rejected entry, in table order."""
    return [(r.row_number, r.provider, r.column, r.code) for r in result.rejected_rows()]


def by_row(result: PromptTableResult) -> dict[int, dict]:
    """Accepted rows keyed by row number (single-file tests)."""
    return {row["row_number"]: row for row in result.accepted.to_pylist()}
