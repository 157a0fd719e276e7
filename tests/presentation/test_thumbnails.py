"""Pages and contact sheets read an image's stored thumbnail, fall back to the image where there is none,
and show no tile for an image that is gone, whatever its thumbnail."""

import base64
import io

import pytest
from PIL import Image

from nbpro_pipeline.cell.state import cell_state
from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.image_files import thumbnail_jpeg
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.presentation.contact_sheet import contact_sheet
from nbpro_pipeline.presentation.gallery import write_cell_gallery
from nbpro_pipeline.presentation.thumbnails import thumbnail_opener
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage
from tests.costs.builders import ledger, record

RED, GREEN = (255, 0, 0), (0, 160, 0)


def _colours(text: str) -> list[tuple[int, int, int]]:
    """The mean colour of every embedded JPEG, in page order."""
    out = []
    for chunk in text.split("data:image/jpeg;base64,")[1:]:
        data = base64.b64decode(chunk.split('"')[0].split(")")[0])
        out.append(Image.open(io.BytesIO(data)).convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))
    return out


def _close(a, b) -> bool:
    return all(abs(x - y) <= 12 for x, y in zip(a, b, strict=True))


@pytest.fixture(params=["local", "memory"])
def storage(request, tmp_path):
    return Storage(str(tmp_path) if request.param == "local" else f"memory://thumbs-{id(tmp_path)}")


def _cell(storage: Storage, n: int = 3):
    """``n`` red images, each with a green stored thumbnail (so a tile says where it was read from)."""
    records = []
    for i in range(n):
        path = storage.image_path("rivya", Resolution.R1K, f"p{i}", f"{i:08x}", "png")
        buf = io.BytesIO()
        Image.new("RGB", (400, 300), RED).save(buf, "PNG")
        storage.write_bytes(path, buf.getvalue())
        storage.write_bytes(
            storage.thumbnail_path(storage.uri(path)), thumbnail_jpeg(Image.new("RGB", (400, 300), GREEN))
        )
        records.append(record(f"p{i}", resolution="1K", image_uri=storage.uri(path), width=400, height=300))
    return cell_state(ledger(*records), Provider.RIVYA, Resolution.R1K, PriceTable()), records


def _page(storage: Storage, state) -> str:
    page = write_cell_gallery(storage, state)
    return storage.read_bytes(storage.fs._strip_protocol(page.uri) if not storage.is_local else page.uri).decode()


def test_pages_and_sheets_read_the_stored_thumbnail(storage):
    state, _ = _cell(storage)
    assert [_close(c, GREEN) for c in _colours(_page(storage, state))] == [True] * 3
    sheet = contact_sheet(state.images, [], open_file=thumbnail_opener(storage))
    assert [_close(c, GREEN) for c in _colours(sheet)] == [True] * 3


def test_an_image_without_a_thumbnail_is_read_itself_and_a_gone_image_has_no_tile(storage):
    state, records = _cell(storage)
    storage.fs.rm(storage.thumbnail_path(records[0].image_uri))  # written before thumbnails were kept
    storage.fs.rm(records[1].image_uri)  # the image is gone, its thumbnail stays
    colours = _colours(_page(storage, state))
    assert len(colours) == 2 and _close(colours[0], RED) and _close(colours[1], GREEN)


def test_an_image_outside_the_root_has_no_thumbnail_path(tmp_path):
    storage = Storage(str(tmp_path / "root"))
    assert storage.thumbnail_path(str(tmp_path / "elsewhere" / "x.png")) is None
    assert storage.thumbnail_path(f"{storage.root}/images/../../elsewhere/x.png") is None
    inside = storage.image_path("rivya", Resolution.R4K, "p", "0" * 8, "png")
    assert storage.thumbnail_path(storage.uri(inside)) == storage.path(
        "thumbnails", "images", "provider=rivya", "resolution=4K", "p-00000000.jpg"
    )
