"""The contact sheet in a cell's metadata: captioned thumbnails, "N of M shown", quarantined apart.

Thumbnails are tiny JPEG data URIs (the event log keeps them), laid out as markdown tables of
``PER_ROW`` images with the prompt id above each; the byte budget is shared by kept and quarantined
images, and what does not fit is counted, never silently dropped. The gallery page has them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from pydantic import BaseModel

from nbpro_pipeline.image_files import ImageProblem, thumbnail_data_uri
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.presentation.ledger_rows import ImageRef

PER_ROW = 6
OVERHEAD = 600  # headings and table rules, kept out of the thumbnails' budget


class Thumb(BaseModel):
    caption: str
    data_uri: str | None  # None: the file cannot be shown, ``note`` says why
    note: str = ""


def _thumbs(
    images: list[ImageRef], open_file: Callable[[str], BinaryIO], budget: int, size: int, caption
) -> tuple[list[Thumb], int]:
    out: list[Thumb] = []
    used = 0
    for image in images:
        uri, note = None, ""
        try:
            with open_file(image.uri) as fh:
                uri = thumbnail_data_uri(fh, size)
        except FileNotFoundError:
            continue
        except (OSError, ImageProblem) as exc:  # one bad file never sinks the sheet: its cell says why
            note = f"no thumbnail: {exc}"[:160]
        label = caption(image)
        shown = uri or md.text(note)
        cost = len(shown) + 2 * len(md.text(label).encode()) + 16  # UTF-8 bytes: caption cell, alt text, separators
        if used + cost > budget:
            break
        out.append(Thumb(caption=label, data_uri=uri, note=note))
        used += cost
    return out, used


def _grid(thumbs: list[Thumb]) -> str:
    blocks = []
    for start in range(0, len(thumbs), PER_ROW):
        chunk = thumbs[start : start + PER_ROW]
        head = md.row([md.text(t.caption) for t in chunk])
        rule = "|" + "|".join(":-:" for _ in chunk) + "|"
        body = md.row([f"![{md.text(t.caption)}]({t.data_uri})" if t.data_uri else md.text(t.note) for t in chunk])
        blocks.append("\n".join([head, rule, body]))
    return "\n\n".join(blocks)


def contact_sheet(
    images: list[ImageRef],
    quarantined: list[ImageRef],
    *,
    open_file: Callable[[str], BinaryIO],
    max_bytes: int = 45_000,
    size: int = 80,
    gallery_hint: str = "the gallery page",
) -> str:
    """Markdown for the cell's kept images, then its quarantined ones, within ``max_bytes``."""
    if not images and not quarantined:
        return "_no images stored in this cell yet_"
    budget = max_bytes - OVERHEAD
    reserve = budget // 4 if quarantined else 0
    kept, used = _thumbs(images, open_file, budget - reserve, size, lambda i: i.prompt_id)
    bad, _ = _thumbs(
        quarantined, open_file, budget - used, size, lambda i: f"{i.prompt_id} ({i.error_code or 'failed'})"
    )
    parts = [
        f"**{len(kept)} of {len(images)} images shown**"
        + (f" (all in {gallery_hint})" if len(kept) < len(images) else "")
    ]
    if kept:
        parts.append(_grid(kept))
    if quarantined:
        parts.append(
            f"**Quarantined: {len(bad)} of {len(quarantined)} shown** (paid for, kept aside, not counted as images)"
        )
        if bad:
            parts.append(_grid(bad))
    return "\n\n".join(parts)
