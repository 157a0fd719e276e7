"""The gallery server: pages, images and charts of a local root over HTTP; nothing else of the root."""

import httpx
import pytest

from nbpro_pipeline.presentation.serve import gallery_server
from tests.serving import serving


@pytest.fixture
def served(tmp_path):
    (tmp_path / "gallery").mkdir()
    (tmp_path / "gallery" / "index.html").write_text("<h1>cell</h1>")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "p.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "part-0.parquet").write_bytes(b"PAR1")
    (tmp_path / "ledger_id").write_text("secret-ish")
    with serving(gallery_server(tmp_path, port=0)) as port:
        yield f"http://127.0.0.1:{port}"


def test_pages_and_images_are_served(served):
    assert httpx.get(f"{served}/gallery/index.html").text == "<h1>cell</h1>"
    image = httpx.get(f"{served}/images/p.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"


@pytest.mark.parametrize("path", ["/ledger/part-0.parquet", "/ledger_id", "/", "/images/", "/gallery/../ledger_id"])
def test_the_ledger_the_root_and_listings_are_not(served, path):
    assert httpx.get(served + path).status_code == 404
