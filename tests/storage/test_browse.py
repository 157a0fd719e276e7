"""What a browser may open of a storage root: links relative to their page, URLs only for page folders."""

from nbpro_pipeline.storage import Storage
from nbpro_pipeline.storage.browse import browser_url, relative_link, under_root


def test_links_between_files_of_the_root_are_relative(tmp_path):
    storage = Storage(str(tmp_path))
    page = storage.path("gallery", "provider=x", "resolution=1K", "index.html")
    image = storage.uri(storage.path("images", "provider=x", "resolution=1K", "p 1.png"))
    assert relative_link(storage, page, image) == "../../../images/provider%3Dx/resolution%3D1K/p%201.png"
    assert relative_link(storage, page, "/elsewhere/p.png") == "file:///elsewhere/p.png"
    assert under_root(storage, str(tmp_path) + "/../other/x.png") is None


def test_a_served_root_gets_urls_for_pages_and_never_for_the_ledger(tmp_path):
    storage = Storage(str(tmp_path))
    page = storage.uri(storage.path("gallery", "cross_provider.html"))
    assert browser_url(storage, page, "http://127.0.0.1:8788/") == "http://127.0.0.1:8788/gallery/cross_provider.html"
    assert browser_url(storage, storage.uri(storage.path("ledger", "part-0.parquet")), "http://127.0.0.1:8788") is None
    assert browser_url(storage, page, None) is None  # a local root nobody serves: the UI shows the path


def test_an_object_store_that_cannot_sign_gives_no_url_and_one_served_gives_its_own():
    storage = Storage("memory://nbpro-browse-test")
    page = storage.uri(storage.path("gallery", "cross_provider.html"))
    assert browser_url(storage, page, None) is None  # memory:// cannot presign
    assert (
        browser_url(storage, page, "https://cdn.example/nbpro")
        == "https://cdn.example/nbpro/gallery/cross_provider.html"
    )
