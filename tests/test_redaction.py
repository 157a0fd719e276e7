"""Credentials never written down: keys and Bearer tokens in provider text, and user:pass@ or signed-URL
parameters in URLs, are redacted wherever the pipeline shows or stores them outside the provider clients."""

from __future__ import annotations

import pytest

from nbpro_pipeline.cell.checks import failed_prompts_markdown
from nbpro_pipeline.cell.state import cell_state
from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.presentation.gallery import write_cross_provider_gallery
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.redaction import has_userinfo, redact_text, redact_url, redact_urls_in
from nbpro_pipeline.storage import Storage
from tests.costs.builders import ledger, record
from tests.prompts.helpers import png_bytes

KEY = "rvya_sk_live_CANARY0123456789"


@pytest.mark.parametrize(
    ("url", "kept", "gone"),
    [
        ("https://alice:hunter2@img.example/a.png", "https://img.example/a.png", "hunter2"),
        ("https://b.s3.amazonaws.com/a.png?X-Amz-Signature=S1G&X-Amz-Credential=CR3D&v=2", "v=2", "S1G"),
        ("https://st.blob.core.windows.net/c/a.png?sv=2024&sig=AZSIG&se=x", "sv=2024", "AZSIG"),
        ("https://img.example/a.png?token=T0K&access_token=T0K2&api_key=K3Y", "a.png?token=redacted", "T0K"),
        ("https://img.example/a.png?Signature=CF&Key-Pair-Id=KP&Policy=P0L", "Signature=redacted", "P0L"),
        ("https://img.example/a.png#access_token=FR4G", "https://img.example/a.png", "FR4G"),
        (f"https://img.example/a.png?q={KEY}", "https://img.example/a.png?q=***", "CANARY"),
    ],
)
def test_redact_url_keeps_where_and_drops_credentials(url, kept, gone):
    out = redact_url(url)
    assert kept in out and gone not in out


def test_text_redaction_and_userinfo():
    assert (
        redact_text(f"echo: Authorization: Bearer abc.DEF-123 key={KEY}", ["s3cret"])
        == "echo: Authorization: *** key=***"
    )
    assert "hunter2" not in redact_urls_in("404 for url 'https://a:hunter2@h/x.png?sig=1'")
    assert has_userinfo("https://a@h/") and has_userinfo("http://a:b@h/") and not has_userinfo("https://h/a@b.png")


def test_provider_text_with_a_key_reaches_no_page_or_metadata(tmp_path):
    storage = Storage(str(tmp_path))
    path = storage.path("quarantine", "p.png")
    storage.write_bytes(path, png_bytes())
    message = f"upstream said: Bearer {KEY} was refused"
    bad = record("p", resolution="1K", status="failed", error_code="size_mismatch", error_message=message,
                 image_uri=storage.uri(path), cost=8)  # fmt: skip
    good = record("p", provider="odirouter", resolution="1K", image_uri=storage.uri(path))
    state = cell_state(ledger(bad), Provider.RIVYA, Resolution.R1K, PriceTable())
    assert "CANARY" not in failed_prompts_markdown(state) and "was refused" in failed_prompts_markdown(state)
    page = write_cross_provider_gallery(storage, ledger(bad, good), PriceTable())
    html = storage.read_bytes(page.uri).decode()
    assert "CANARY" not in html and "upstream said: Bearer *** was refused" in html
