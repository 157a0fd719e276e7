"""Decompression bombs in display code: every decode is bounded by the largest size the model returns, a
bomb is refused from its header, and one file that cannot be shown never sinks a contact sheet, a cell
view (what ``generated_images`` shows on every re-run) or the cross-provider gallery: its tile says why."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import zlib

import pytest
from PIL import Image

from nbpro_pipeline.cell.checks import FailureThresholds
from nbpro_pipeline.cell.review import review_cell
from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.image_files import MAX_DECODE_PIXELS, ImageProblem, inspect_image, thumbnail_data_uri
from nbpro_pipeline.models.common import PIXEL_SIZES
from nbpro_pipeline.presentation.gallery import CROSS_GALLERY_COLUMNS, write_cross_provider_gallery
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.sandbox.runtime import SandboxRuntime
from nbpro_pipeline.storage import read_ledger
from tests.engine.conftest import harness, prompt_row  # noqa: F401  (harness is a fixture)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int, rows: int | None = None) -> bytes:
    """A grey PNG of ``width`` x ``height`` whose pixels deflate to almost nothing (``rows``: encode only
    that many rows, for a file that merely claims its size)."""
    deflate = zlib.compressobj(9)
    line = b"\x00" * (width + 1)
    body = b"".join(deflate.compress(line) for _ in range(height if rows is None else rows)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def test_the_limit_comes_from_the_model_sizes_with_a_margin():
    largest = max(w * h for w, h in PIXEL_SIZES.values())
    assert 6336 * 2688 <= largest < MAX_DECODE_PIXELS <= 2 * largest


@pytest.mark.parametrize("size", [(40000, 40000), (10000, 10000), (7000, 7000)])
def test_bombs_are_refused_from_their_header(size):
    data = bomb_png(*size, rows=4)
    with pytest.raises(ImageProblem, match="refused undecoded"):
        thumbnail_data_uri(io.BytesIO(data))
    with pytest.raises(ImageProblem) as problem:
        inspect_image(io.BytesIO(data))
    assert problem.value.code == "corrupt_image"


def _peak_rss_mb(setup: str, action: str) -> tuple[float, float]:
    """(peak RSS after ``setup``, peak RSS after ``action``) of a fresh interpreter, in MB."""
    code = textwrap.dedent(
        f"""
        import io, resource
        from nbpro_pipeline.image_files import ImageProblem, thumbnail_data_uri
        {setup}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            {action}
        except ImageProblem as exc:
            print("refused:", exc)
        print(before / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    before, after = out.strip().splitlines()[-1].split()
    return float(before), float(after)


def test_thumbnailing_a_10000_square_image_keeps_rss_bounded(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(bomb_png(10000, 10000))  # a complete, valid stream: 100 MB of pixels decoded
    before, after = _peak_rss_mb(f"data = open({str(path)!r}, 'rb').read()", "thumbnail_data_uri(io.BytesIO(data), 80)")
    assert after - before < 20, (before, after)


def test_a_4k_jpeg_thumbnail_decodes_at_reduced_scale(tmp_path):
    path = tmp_path / "4k.jpg"
    Image.effect_noise((5504, 3072), 64).convert("RGB").save(path, "JPEG", quality=90)  # 50 MB decoded in full
    before, after = _peak_rss_mb(f"data = open({str(path)!r}, 'rb').read()", "thumbnail_data_uri(io.BytesIO(data), 80)")
    assert after - before < 25, (before, after)


@pytest.fixture
def bombs_served(monkeypatch):
    """The sandbox answers every prompt mentioning 'bomb' with a 40000x40000 PNG."""
    real = SandboxRuntime.image_bytes
    bomb = bomb_png(40000, 40000, rows=16)

    async def image_bytes(self, task):
        return bomb if "bomb" in task.prompt else await real(self, task)

    monkeypatch.setattr(SandboxRuntime, "image_bytes", image_bytes)


async def test_a_bomb_is_quarantined_and_the_cell_view_and_galleries_still_render(harness, bombs_served):  # noqa: F811
    rows = [prompt_row("bomb", "a bomb", row_number=1), prompt_row("fine", row_number=2)]
    for provider in Provider:
        report = await harness.run(provider, rows)
        assert (report.succeeded, report.failed) == (1, 1)
    (bad,) = [r for r in harness.rows(Provider.RIVYA) if r["prompt_id"] == "bomb"]
    assert bad["error_code"] == "corrupt_image" and "/quarantine/" in bad["image_uri"]
    for provider in Provider:  # what generated_images shows on every re-run of the cell
        result = next(r for r in harness.results if r.report.provider == provider.value)
        view = review_cell(result, harness.storage, _no_rows(), PriceTable(), FailureThresholds()).view
        sheet = view.markdown["contact_sheet"]
        assert (
            "no thumbnail" in sheet and "refused undecoded" in sheet and "(data:image/jpeg" in sheet
        )  # the good one too
        page = harness.storage.read_bytes(view.gallery.uri).decode()
        assert "no thumbnail: refused undecoded" in page and page.count("data:image/jpeg") == 1
    ledger = read_ledger(harness.storage, columns=CROSS_GALLERY_COLUMNS)
    cross = write_cross_provider_gallery(harness.storage, ledger, PriceTable())
    html = harness.storage.read_bytes(cross.uri).decode()
    assert cross.total == 2 and "no thumbnail: refused undecoded" in html and html.count("data:image/jpeg") == 2


def _no_rows():
    import pyarrow as pa

    return pa.table({"prompt_id": pa.array([], pa.string()), "prompt_sha256": pa.array([], pa.string())})
