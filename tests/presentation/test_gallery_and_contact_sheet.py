"""Contact sheet and gallery pages: captioned, counted, quarantined apart, written through fsspec."""

import io

from PIL import Image

from nbpro_pipeline.cell.state import cell_state
from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.presentation.contact_sheet import contact_sheet
from nbpro_pipeline.presentation.gallery import write_cell_gallery, write_cross_provider_gallery
from nbpro_pipeline.presentation.ledger_rows import ImageRef
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage
from tests.costs.builders import ledger, record


def _png(storage: Storage, name: str, colour: str) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (120, 90), colour).save(buf, "PNG")
    path = storage.path("images", name)
    storage.write_bytes(path, buf.getvalue())
    return storage.uri(path)


def _rows(storage: Storage, n_ok: int = 3):
    rows = [
        record(f"p{i}", resolution="1K", image_uri=_png(storage, f"p{i}.png", "red"), width=120, height=90)
        for i in range(n_ok)
    ]
    rows.append(
        record(
            "bad",
            resolution="1K",
            status="failed",
            error_code="size_mismatch",
            cost=8,
            error_message="120x90 returned for 1:1",
            image_uri=_png(storage, "bad.png", "blue"),
        )  # fmt: skip
    )
    rows.append(record("p0", provider="odirouter", resolution="1K", image_uri=_png(storage, "o0.png", "green")))
    return rows


def _rivya(records):
    return ledger(*(r for r in records if r.provider == Provider.RIVYA.value))


def test_contact_sheet_captions_counts_and_shows_quarantine_apart(tmp_path):
    storage = Storage(str(tmp_path))
    state = cell_state(_rivya(_rows(storage, 8)), Provider.RIVYA, Resolution.R1K, PriceTable())
    md = contact_sheet(state.images, state.quarantined, open_file=storage.fs.open, max_bytes=6_000)
    kept = md.count("](data:image/jpeg") - 1  # one quarantined
    assert md.startswith(f"**{kept} of 8 images shown** (all in the gallery page)") and 0 < kept < 8
    assert md.split("\n\n")[1].splitlines()[0].startswith("| p0 | p1 |")  # captions above thumbnails
    assert "**Quarantined: 1 of 1 shown**" in md and "bad \\(size\\_mismatch\\)" in md  # captions are escaped


def test_galleries_are_written_to_an_fsspec_root_and_say_what_they_show():
    storage = Storage("memory://nbpro-gallery-test")
    records = _rows(storage)
    rows = ledger(*records)
    state = cell_state(_rivya(records), Provider.RIVYA, Resolution.R1K, PriceTable())
    page = write_cell_gallery(storage, state)
    html = storage.read_bytes(page.uri.removeprefix("memory://")).decode()
    assert page.uri.startswith("memory://") and (page.shown, page.total) == (3, 3)
    assert "rivya|1K: 3 of 3 images shown" in html and "Quarantined: 1 of 1 shown" in html
    assert html.count("data:image/jpeg;base64,") == 4
    cross = write_cross_provider_gallery(storage, rows, PriceTable())
    html = storage.read_bytes(cross.uri.removeprefix("memory://")).decode()
    assert (cross.shown, cross.total) == (1, 1)  # only p0 is in more than one cell
    assert "<th>rivya 1K</th><th>odirouter 1K</th>" in html.replace("\n", "")
    assert "8 credits ($0.134)" in html and "$0.150" in html


def test_contact_sheet_stays_under_max_bytes_counting_utf8_and_skips_unreadable(tmp_path):
    storage = Storage(str(tmp_path))
    images = [ImageRef(prompt_id=f"é-{i}-ünïcode", uri=_png(storage, f"u{i}.png", "red")) for i in range(12)] + [
        ImageRef(prompt_id="missing", uri=str(tmp_path / "nope.png"))
    ]
    for limit in (3_000, 6_000, 20_000):
        md = contact_sheet(images, [], open_file=storage.fs.open, max_bytes=limit)
        assert len(md.encode()) <= limit, limit
    md = contact_sheet(images, [], open_file=storage.fs.open, max_bytes=10**6)
    assert md.startswith("**12 of 13 images shown**") and "missing" not in md.split("\n\n", 1)[1]
    assert contact_sheet([], [], open_file=storage.fs.open) == "_no images stored in this cell yet_"
