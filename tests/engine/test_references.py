"""Reference images: hashed for the fingerprint, uploaded to Rivya once per content, cached in storage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from nbpro_pipeline.cell.checks import check_accounting
from nbpro_pipeline.engine import EngineSettings
from nbpro_pipeline.engine.steps import PromptSteps
from nbpro_pipeline.models.common import AspectRatio, pixel_size
from nbpro_pipeline.providers import RivyaClient
from nbpro_pipeline.providers.registry import Provider
from tests.engine.conftest import SETTINGS, prompt_row, prompt_rows


def rooted(root) -> EngineSettings:
    """The rows here claim to come from /data/prompts.csv; their references live in ``root``."""
    return SETTINGS.model_copy(update={"reference_roots": [str(root)]})


def reference_png(path, color=(200, 30, 30)) -> str:
    Image.new("RGB", (64, 48), color).save(path, "PNG")
    return str(path)


def count_uploads(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = RivyaClient.upload_reference

    async def spy(self, source, *, name=None):
        calls.append(hashlib.sha256(source if isinstance(source, bytes) else source.read_bytes()).hexdigest())
        return await real(self, source, name=name)

    monkeypatch.setattr(RivyaClient, "upload_reference", spy)
    return calls


async def test_a_shared_reference_is_uploaded_once_and_cached(harness, tmp_path, monkeypatch):
    uploads = count_uploads(monkeypatch)
    ref = reference_png(tmp_path / "ref.png")
    sha = hashlib.sha256(Path(ref).read_bytes()).hexdigest()
    rows = [prompt_row(f"r{i}", row_number=i + 1, reference_images=(ref,)) for i in range(5)]
    rows.append(prompt_row("missing", row_number=6, reference_images=(str(tmp_path / "nope.png"),)))
    rows.append(prompt_row("plain", row_number=7))
    report = await harness.run(Provider.RIVYA, rows, run_id="run-1", settings=rooted(tmp_path))
    assert (report.succeeded, report.failed) == (6, 1)
    assert report.failures_by_reason == {"reference_unreadable": 1}
    assert uploads == [sha]
    assert harness.results[-1].report.references_uploaded == 1
    cache = harness.storage.path("references", "rivya", f"{sha}.json")
    assert harness.storage.find(harness.storage.path("references", "rivya")) == [cache]
    cached = json.loads(harness.storage.read_bytes(cache))
    assert cached["sha256"] == sha and cached["file_id"]
    by_id = {r["prompt_id"]: r for r in harness.rows()}
    missing = by_id.pop("missing")
    assert (missing["status"], missing["error_code"], missing["final_cost"]) == ("failed", "reference_unreadable", 0)
    assert "nope.png" in missing["error_message"] and missing["task_id"] is None
    for pid in (f"r{i}" for i in range(5)):
        assert json.loads(by_id[pid]["params"])["references"] == [sha]
    assert len({by_id[f"r{i}"]["fingerprint"] for i in range(5)}) == 5
    assert harness.tasks_created(Provider.RIVYA) == 6
    harness.assert_reconciles(Provider.RIVYA)

    # a later run with new prompts and the same picture (even under another name) uploads nothing
    copy = tmp_path / "copy-of-ref.png"
    copy.write_bytes(Path(ref).read_bytes())
    later = [prompt_row(f"n{i}", row_number=i + 1, reference_images=(str(copy),)) for i in range(3)]
    again = await harness.run(Provider.RIVYA, later, run_id="run-2", settings=rooted(tmp_path))
    assert again.succeeded == 3 and uploads == [sha]
    assert harness.results[-1].report.references_uploaded == 0


async def test_a_reference_change_makes_a_new_request(harness, tmp_path):
    ref = tmp_path / "ref.png"
    reference_png(ref, (1, 2, 3))
    rows = [prompt_row("a", "same words", reference_images=(str(ref),))]
    await harness.run(Provider.RIVYA, rows, run_id="run-1", settings=rooted(tmp_path))
    reference_png(ref, (250, 250, 250))  # same path, new picture
    again = await harness.run(Provider.RIVYA, rows, run_id="run-2", settings=rooted(tmp_path))
    assert (again.submitted, again.succeeded, again.already_done) == (1, 1, 0)
    fps = {r["fingerprint"] for r in harness.rows()}
    assert len(fps) == 2
    harness.assert_reconciles(Provider.RIVYA)


async def test_a_reference_that_is_not_an_image_fails_only_its_row(harness, tmp_path):
    bogus = tmp_path / "ref.png"
    bogus.write_bytes(b"this is a text file with a png name")
    rows = [*prompt_rows(2), prompt_row("bad", row_number=3, reference_images=(str(bogus),))]
    report = await harness.run(Provider.RIVYA, rows, settings=rooted(tmp_path))
    assert (report.succeeded, report.failed) == (2, 1)
    assert report.failures_by_reason == {"reference_unreadable": 1}


async def test_odirouter_needs_reference_urls_not_local_files(harness, tmp_path):
    ref = reference_png(tmp_path / "ref.png")
    rows = [*prompt_rows(2), prompt_row("local", row_number=3, reference_images=(ref,))]
    report = await harness.run(Provider.ODIROUTER, rows, settings=rooted(tmp_path))
    assert (report.succeeded, report.failed) == (2, 1)
    bad = next(r for r in harness.rows() if r["prompt_id"] == "local")
    assert bad["error_code"] == "reference_unreadable" and "http(s) URL" in bad["error_message"]
    assert harness.tasks_created(Provider.ODIROUTER) == 2


async def test_a_bug_on_a_row_with_references_is_still_accounted_for(harness, tmp_path, monkeypatch):
    real = PromptSteps.submit_and_see_through

    async def buggy(self, attempt):
        if attempt.row.prompt_id == "r1":
            raise RuntimeError("simulated bug")
        return await real(self, attempt)

    monkeypatch.setattr(PromptSteps, "submit_and_see_through", buggy)
    ref = reference_png(tmp_path / "ref.png")
    rows = [prompt_row(f"r{i}", row_number=i + 1, reference_images=(ref,)) for i in range(3)]
    report = await harness.run(Provider.RIVYA, rows, settings=rooted(tmp_path))
    assert (report.succeeded, report.failed) == (2, 1)
    result = harness.results[-1]
    outcome = check_accounting(result.eligible, harness.ledger(Provider.RIVYA))
    assert outcome.passed, outcome.description
    assert len(result.eligible) == 3


async def test_auto_aspect_follows_the_reference_and_passes_the_size_check(harness, tmp_path):
    ref = reference_png(tmp_path / "wide.png")  # 64x48: nearest table ratio 4:3
    rows = [
        prompt_row("auto-ref", row_number=1, aspect_ratio=AspectRatio.AUTO, reference_images=(ref,)),
        prompt_row("auto-plain", row_number=2, aspect_ratio=AspectRatio.AUTO),
    ]
    report = await harness.run(Provider.RIVYA, rows, settings=rooted(tmp_path))
    assert report.succeeded == 2
    sizes = {r["prompt_id"]: (r["width"], r["height"]) for r in harness.rows()}
    assert sizes == {"auto-ref": pixel_size("4:3", "1K"), "auto-plain": pixel_size("1:1", "1K")}


@pytest.mark.external
async def test_reference_downloads_go_through_the_environment_proxy(tmp_path, monkeypatch):
    """A corporate proxy in http_proxy carries reference downloads too, as it does API calls and results."""
    import io

    from aiohttp import web

    from nbpro_pipeline.engine.references import ReferenceResolver
    from nbpro_pipeline.network_policy import NetworkPolicy
    from nbpro_pipeline.providers.rivya import TRAITS as RIVYA_TRAITS
    from nbpro_pipeline.storage.filesystem import Storage
    from tests.providers.http_servers import ForwardProxy, Origin

    png = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 10)).save(png, "PNG")

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=png.getvalue(), content_type="image/png")

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxy = ForwardProxy(tmp_path)
    try:
        monkeypatch.setenv("http_proxy", proxy.url)
        async with Origin({("GET", "/ref.png"): image}) as origin:
            loopback = NetworkPolicy(allow_networks=("127.0.0.0/8",))  # the origin is on loopback: allowed explicitly
            resolver = ReferenceResolver(RIVYA_TRAITS, None, Storage(str(tmp_path / "root")), network=loopback)  # type: ignore[arg-type]
            try:
                (ref,) = await resolver.for_fingerprint((f"{origin.url}/ref.png",))
            finally:
                await resolver.aclose()
        assert ref.sha256 == hashlib.sha256(png.getvalue()).hexdigest()
        host = origin.url.split("://", 1)[1]
        assert f"GET {host}/ref.png" in proxy.wait_for(lambda seen: any("/ref.png" in r for r in seen))
    finally:
        proxy.close()
