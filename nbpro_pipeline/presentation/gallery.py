"""Static HTML galleries written next to the images (any fsspec root, s3 included): one page per cell,
and one cross-provider page with the same prompt from every provider and resolution side by side.

Pages are self-contained: thumbnails are embedded (data URIs), so a page opened from an object store,
a download or a CI artifact shows its pictures; each thumbnail links to the full image by a path relative
to the page, so a served or copied root keeps its links. Each picture is captioned with its prompt id and
prompt text. HTML comes from a Jinja2 template with autoescaping (prompt ids, prompt text and error
messages are table data, not markup).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import BinaryIO, Protocol

import jinja2
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from nbpro_pipeline.costs.estimate import eligible_mask
from nbpro_pipeline.costs.prices import PriceTable
from nbpro_pipeline.image_files import THUMBNAIL_SIDE, ImageProblem, thumbnail_data_uri
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.presentation.ledger_rows import ImageRef, records
from nbpro_pipeline.presentation.thumbnails import thumbnail_opener
from nbpro_pipeline.providers.registry import PROVIDERS
from nbpro_pipeline.redaction import redact_text
from nbpro_pipeline.storage.browse import relative_link
from nbpro_pipeline.storage.filesystem import Storage, cell_dir

MAX_PER_CELL = 200  # thumbnails on a cell page; the count says how many more the cell has
MAX_PROMPTS = 60  # rows of the cross-provider page
PROMPT_CHARS = 280  # of a prompt's text under its picture; the table has the rest

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("nbpro_pipeline.presentation", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_CELL_PAGE = _ENV.get_template("cell.html")

_CROSS_PAGE = _ENV.get_template("cross_provider.html")


class Tile(BaseModel):
    prompt_id: str
    prompt: str = ""  # the prompt's text (shortened), escaped by the template
    cell: str
    src: str | None  # thumbnail data URI; None when the file cannot be shown (``text`` says why)
    link: str  # the full image
    detail: str
    bad: bool = False
    text: str = ""
    usability: str | None = None  # shown as a badge: usable, blank, duplicate, reference_copy


class NoImage(BaseModel):
    """A cross-provider cell with no image: the latest outcome says why, or that there is none yet."""

    text: str
    bad: bool = True
    src: None = None
    link: None = None


class GalleryPrompts(BaseModel):
    """What the pages say of prompts beyond the ledger: their text, and in which cells each is eligible
    (so a prompt with no outcome in a cell reads "not run yet" or "not for this cell")."""

    text: dict[str, str] = {}  # prompt id -> prompt text
    cells: dict[str, set[str]] | None = None  # "provider|resolution" -> eligible prompt ids; None: unknown

    def of(self, prompt_id: str) -> str:
        text = " ".join(self.text.get(prompt_id, "").split())
        return text if len(text) <= PROMPT_CHARS else text[: PROMPT_CHARS - 1] + "…"

    def absent(self, prompt_id: str, cell: str) -> str:
        if self.cells is None:
            return "no outcome in this cell"
        return "not run yet" if prompt_id in self.cells.get(cell, set()) else "not for this cell"


def gallery_prompts(accepted: pa.Table, cells: list[tuple[str, Resolution]]) -> GalleryPrompts:
    """The accepted prompt table's text and eligibility per cell, for the pages."""
    text = dict(zip(accepted["prompt_id"].to_pylist(), accepted["prompt"].to_pylist(), strict=True))
    eligible = {
        f"{p}|{r.value}": set(accepted.filter(eligible_mask(accepted, p, r))["prompt_id"].to_pylist()) for p, r in cells
    }
    return GalleryPrompts(text=text, cells=eligible)


class CellPageFacts(Protocol):
    """What a cell's page shows of the cell: ``cell.state.CellState`` is one (a protocol, so that presentation
    never imports the cell package, which sits above it)."""

    provider: str
    resolution: Resolution
    cost_unit: str
    cost_total: Decimal
    cost_usd_total: Decimal
    images: list[ImageRef]
    quarantined: list[ImageRef]

    @property
    def cell(self) -> str: ...

    @property
    def outstanding(self) -> list: ...


class GalleryPage(BaseModel):
    uri: str
    shown: int
    total: int


def _tile(
    image: ImageRef, cell: str, detail: str, open_file: Callable[[str], BinaryIO], bad: bool, link: str, prompt: str
) -> Tile | None:
    """The image's tile; a file that is gone gives none, one that cannot be shown a tile saying why."""
    src, why = None, ""
    try:
        with open_file(image.uri) as fh:
            src = thumbnail_data_uri(fh, THUMBNAIL_SIDE, quality=70)
    except FileNotFoundError:
        return None
    except (OSError, ImageProblem) as exc:  # one bad file never sinks the page
        why = f"no thumbnail: {exc}"
    return Tile(
        prompt_id=image.prompt_id,
        prompt=prompt,
        cell=cell,
        src=src,
        link=link,
        detail=detail,
        bad=bad,
        text=why,
        usability=image.usability,
    )


def _size(image: ImageRef) -> str:
    return f"{image.width}x{image.height}" if image.width and image.height else "size unknown"


def write_cell_gallery(storage: Storage, state: CellPageFacts, prompts: Mapping[str, str] | None = None) -> GalleryPage:
    """``gallery/provider=…/resolution=…/index.html``: every kept image (up to ``MAX_PER_CELL``), then the
    quarantined ones, each captioned with prompt id and text (``prompts``: id -> text), size, latency, cost."""
    unit = state.cost_unit
    path = storage.path("gallery", cell_dir(state.provider, state.resolution), "index.html")
    facts = GalleryPrompts(text=dict(prompts or {}))

    def detail(i: ImageRef) -> str:
        head = f"{i.error_code}: " if i.error_code else ""
        latency = f", {i.latency_s:.1f} s" if i.latency_s is not None else ""
        return f"{head}{_size(i)}{latency}, {i.cost.normalize():f} {unit}"

    open_file = thumbnail_opener(storage)

    def tile(i: ImageRef, bad: bool) -> Tile | None:
        link = relative_link(storage, path, i.uri)
        return _tile(i, state.cell, detail(i), open_file, bad, link, facts.of(i.prompt_id))

    tiles = [tile(i, False) for i in state.images[:MAX_PER_CELL]]
    bad = [tile(i, True) for i in state.quarantined[:MAX_PER_CELL]]
    kept = [t for t in tiles if t]
    html = _CELL_PAGE.render(
        cell=state.cell,
        shown=len(kept),
        total=len(state.images),
        cost=f"{state.cost_total.normalize():f} {unit} spent (about ${state.cost_usd_total:.2f})",
        outstanding=len(state.outstanding),
        kept=kept,
        bad=[t for t in bad if t],
        bad_total=len(state.quarantined),
    )
    storage.write_bytes(path, html.encode("utf-8"))
    return GalleryPage(uri=storage.uri(path), shown=len(kept), total=len(state.images))


# what the cross-provider page reads of the ledger: pass it as ``read_ledger(columns=...)``
CROSS_GALLERY_COLUMNS = ["prompt_id", "provider", "resolution", "status", "error_code", "error_message", "image_uri",
                         "width", "height", "latency_s", "final_cost", "recorded_at", "usability"]  # fmt: skip


def _latest_with_image(ledger: pa.Table) -> pd.DataFrame:
    df = ledger.select(CROSS_GALLERY_COLUMNS).to_pandas().sort_values("recorded_at", kind="stable")
    return df.drop_duplicates(["prompt_id", "provider", "resolution"], keep="last")


def write_cross_provider_gallery(
    storage: Storage, ledger: pa.Table, prices: PriceTable, prompts: GalleryPrompts | None = None
) -> GalleryPage:
    """``gallery/cross_provider.html``: one row per prompt that has an outcome in more than one cell, one
    column per provider x resolution, with cost (native and USD), latency and any size mismatch; a cell
    without an outcome says whether the prompt is still to run there (``prompts``)."""
    facts = prompts or GalleryPrompts()
    path = storage.path("gallery", "cross_provider.html")
    df = _latest_with_image(ledger)
    names = sorted(set(df["provider"]), key=lambda p: (PROVIDERS.order(p), p))
    cells = [(p, r) for r in Resolution for p in names]
    present = [(p, r) for p, r in cells if ((df["provider"] == p) & (df["resolution"] == r.value)).any()]
    counts = df.groupby("prompt_id").size()
    prompts = sorted(counts[counts > 1].index)
    rows = []
    for prompt_id in prompts[:MAX_PROMPTS]:
        mine = df[df["prompt_id"] == prompt_id]
        tiles = []
        for provider, resolution in present:
            hit = mine[(mine["provider"] == provider) & (mine["resolution"] == resolution.value)]
            absent = NoImage(text=facts.absent(prompt_id, f"{provider}|{resolution.value}"), bad=False)
            tiles.append(_cross_tile(records(hit)[0], resolution, prices, storage, path) if len(hit) else absent)
        rows.append({"prompt_id": prompt_id, "prompt": facts.of(prompt_id), "tiles": tiles})
    html = _CROSS_PAGE.render(cells=[f"{p} {r.value}" for p, r in present], rows=rows, total=len(prompts))
    storage.write_bytes(path, html.encode("utf-8"))
    return GalleryPage(uri=storage.uri(path), shown=len(rows), total=len(prompts))


def _cross_tile(
    row: dict, resolution: Resolution, prices: PriceTable, storage: Storage, page: str
) -> Tile | NoImage | None:
    """A cell of the cross-provider table: the image with cost, latency and size, or why there is none."""
    provider = row["provider"]
    cost = Decimal(row["final_cost"] or 0)
    if row["image_uri"] is None:
        return NoImage(text=f"{row['status']}: {row['error_code'] or 'no reason recorded'}")
    image = ImageRef(
        prompt_id=row["prompt_id"],
        uri=row["image_uri"],
        width=None if row["width"] is None else int(row["width"]),
        height=None if row["height"] is None else int(row["height"]),
        error_code=row["error_code"],
        latency_s=None if row["latency_s"] is None else float(row["latency_s"]),
        cost=cost,
        usability=row["usability"],
    )
    bad = row["status"] != OutcomeStatus.SUCCEEDED.value
    usd = prices.to_usd(provider, cost) if prices.knows(provider) else cost
    latency = f"{image.latency_s:.1f} s" if image.latency_s is not None else "latency unknown"
    unit = prices.unit(provider) if prices.knows(provider) else "usd"
    money = f"${usd:.3f}" if unit == "usd" else f"{cost.normalize():f} {unit} (${usd:.3f})"
    message = redact_text(row["error_message"] or "")  # provider text; the clients redact it too
    flag = f"{(image.error_code or 'failed').replace('_', ' ')}: {message}; " if bad else ""
    detail = f"{flag}{money}, {latency}, {_size(image)}"
    link = relative_link(storage, page, image.uri)
    return _tile(image, f"{provider} {resolution.value}", detail, thumbnail_opener(storage), bad, link, "")
