"""The upload stage enforces the reference policy itself: rows that never went through validation (an
edited accepted table) still cannot make the engine open files outside the roots, fetch other schemes,
or send more than 30 MB or something that is not an image. Each refused row fails alone, unpaid."""

from __future__ import annotations

import contextlib
import http.server
import os
from collections.abc import Iterator

import pytest
from PIL import Image

from nbpro_pipeline.network_policy import NetworkPolicy
from nbpro_pipeline.providers import RivyaClient
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.providers.rivya.traits import MAX_FILE_BYTES as RIVYA_MAX_FILE_BYTES
from tests.engine.conftest import SETTINGS, prompt_row
from tests.prompts.helpers import png_bytes
from tests.serving import serving

# reference downloads refuse loopback unless allowed (network_policy); these tests serve images there
LOOPBACK_ALLOWED = SETTINGS.model_copy(
    update={"reference_network": NetworkPolicy(allow_networks=("127.0.0.0/8", "::1/128"))}
)


def rooted(*roots) -> object:
    return SETTINGS.model_copy(update={"reference_roots": [str(r) for r in roots]})


def from_table(row, table_path):
    """The row as if read from ``table_path`` (its folder is the default root)."""
    return row.model_copy(update={"source_uri": str(table_path)})


@pytest.fixture
def tree(tmp_path):
    allowed, secret = tmp_path / "allowed", tmp_path / "secret"
    allowed.mkdir()
    secret.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(allowed / "ok.png")
    Image.new("RGB", (8, 8), (9, 9, 9)).save(secret / "private.png")
    os.symlink(secret / "private.png", allowed / "link.png")
    return allowed, secret


@pytest.fixture
def uploads(monkeypatch) -> list[bytes]:
    sent: list[bytes] = []
    real = RivyaClient.upload_reference

    async def spy(self, source, *, name=None):
        sent.append(source)
        return await real(self, source, name=name)

    monkeypatch.setattr(RivyaClient, "upload_reference", spy)
    return sent


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        png = png_bytes()
        if self.path == "/ok.png":
            body, length = png, len(png)
        elif self.path == "/text.png":
            body = b"<html>not an image</html>"
            length = len(body)
        elif self.path == "/declared-huge.png":
            body, length = png, RIVYA_MAX_FILE_BYTES + 1  # the header alone must be enough to refuse
        elif self.path == "/streamed-huge.png":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = png + b"\0" * (1 << 20)
            try:
                for _ in range(RIVYA_MAX_FILE_BYTES // len(block) + 2):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the engine hung up once it had seen enough: what is wanted
            return
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused after the header
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def files_url() -> Iterator[str]:
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)) as port:
        yield f"http://127.0.0.1:{port}"


def outcomes(harness) -> dict[str, tuple[str, str | None, str | None]]:
    return {r["prompt_id"]: (r["status"], r["error_code"], r["error_message"]) for r in harness.rows()}


async def test_local_files_outside_the_configured_roots_are_never_read(harness, tree, uploads):
    allowed, secret = tree
    rows = [
        prompt_row("inside", row_number=1, reference_images=(str(allowed / "ok.png"),)),
        prompt_row("outside", row_number=2, reference_images=(str(secret / "private.png"),)),
        prompt_row("dotdot", row_number=3, reference_images=(f"{allowed}/../secret/private.png",)),
        prompt_row("symlink", row_number=4, reference_images=(str(allowed / "link.png"),)),
        prompt_row("relative", row_number=5, reference_images=("allowed/ok.png",)),
        prompt_row("system", row_number=6, reference_images=("/etc/passwd",)),
    ]
    report = await harness.run(Provider.RIVYA, rows, settings=rooted(allowed))
    assert (report.succeeded, report.failed) == (1, 5)
    seen = outcomes(harness)
    assert seen["inside"][0] == "succeeded"
    for pid in ("outside", "dotdot", "symlink", "system"):
        status, code, message = seen[pid]
        assert (status, code) == ("failed", "reference_unreadable")
        assert "outside the allowed reference roots" in message and str(allowed) in message
    assert "not an absolute path" in seen["relative"][2]
    assert uploads == [(allowed / "ok.png").read_bytes()]  # the private picture never left
    assert harness.tasks_created(Provider.RIVYA) == 1
    harness.assert_reconciles(Provider.RIVYA)


async def test_without_configured_roots_a_row_may_use_only_its_tables_folder(harness, tree, tmp_path, uploads):
    allowed, secret = tree
    ok, private = str(allowed / "ok.png"), str(secret / "private.png")
    rows = [
        from_table(prompt_row("own-folder", row_number=1, reference_images=(ok,)), allowed / "t.csv"),
        from_table(prompt_row("as-file-uri", row_number=2, reference_images=(ok,)), f"file://{allowed}/t.csv"),
        from_table(prompt_row("other-folder", row_number=3, reference_images=(private,)), allowed / "t.csv"),
        from_table(prompt_row("remote-table", row_number=4, reference_images=(ok,)), "s3://bucket/prompts/t.csv"),
    ]
    report = await harness.run(Provider.RIVYA, rows)
    seen = outcomes(harness)
    assert (report.succeeded, report.failed) == (2, 2)
    assert seen["own-folder"][0] == seen["as-file-uri"][0] == "succeeded"
    assert seen["other-folder"][1] == "reference_unreadable" and str(allowed) in seen["other-folder"][2]
    # a table in a bucket may use objects under its prefix, never files of the machine that runs it
    assert "outside the allowed reference roots (s3://bucket/prompts)" in seen["remote-table"][2]
    assert all(data == (allowed / "ok.png").read_bytes() for data in uploads)


@pytest.mark.parametrize("provider", list(Provider), ids=lambda p: p.value)
async def test_only_http_urls_are_fetched(harness, tree, provider):
    allowed, _ = tree
    refused = [
        f"file://{allowed}/ok.png",
        "ftp://example.com/a.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "s3://bucket/a.png",
        "https://",
    ]
    rows = [prompt_row(f"r{i}", row_number=i + 1, reference_images=(ref,)) for i, ref in enumerate(refused)]
    rows.append(prompt_row("plain", row_number=len(rows) + 1))
    report = await harness.run(provider, rows, settings=rooted(allowed))
    seen = outcomes(harness)
    assert (report.succeeded, report.failed) == (1, len(refused))
    for i, ref in enumerate(refused):
        status, code, message = seen[f"r{i}"]
        assert (status, code) == ("failed", "reference_unreadable") and ref in message
    assert "not supported" in seen["r2"][2] and "has no host" in seen["r5"][2]
    assert harness.tasks_created(provider) == 1


async def test_http_references_are_checked_before_upload(harness, files_url, uploads):
    cases = {
        "fine": f"{files_url}/ok.png",
        "upper-scheme": f"HTTP://{files_url.removeprefix('http://')}/ok.png",
        "missing": f"{files_url}/nothing.png",
        "sandbox-404": f"{harness.sandbox.rivya_url}/cdn/nothing.png",
        "not-image": f"{files_url}/text.png",
        "declared-huge": f"{files_url}/declared-huge.png",
        "streamed-huge": f"{files_url}/streamed-huge.png",
    }
    rows = [prompt_row(pid, row_number=i + 1, reference_images=(url,)) for i, (pid, url) in enumerate(cases.items())]
    report = await harness.run(Provider.RIVYA, rows, settings=LOOPBACK_ALLOWED)  # the test servers are on loopback
    seen = outcomes(harness)
    assert (report.succeeded, report.failed) == (2, 5)
    assert seen["fine"][0] == seen["upper-scheme"][0] == "succeeded"
    assert "404" in seen["missing"][2] and "404" in seen["sandbox-404"][2]
    assert "not a JPEG, PNG or WebP image" in seen["not-image"][2]
    assert "at most 30 MB" in seen["declared-huge"][2] and "at most 30 MB" in seen["streamed-huge"][2]
    assert uploads == [png_bytes()]  # one upload for both spellings of the same picture
    harness.assert_reconciles(Provider.RIVYA)


async def test_local_files_too_large_or_not_images_or_not_files(harness, tmp_path, uploads):
    (tmp_path / "refs").mkdir()
    huge = tmp_path / "refs/huge.png"
    with open(huge, "wb") as handle:
        handle.write(png_bytes())
        handle.truncate(RIVYA_MAX_FILE_BYTES + 1)  # sparse: nothing written
    (tmp_path / "refs/text.png").write_text("hello")
    (tmp_path / "refs/empty.png").write_bytes(b"")
    os.mkfifo(tmp_path / "refs/pipe.png")  # would block a reader forever
    names = ["huge", "text", "empty", "pipe"]
    rows = [
        prompt_row(n, row_number=i + 1, reference_images=(str(tmp_path / f"refs/{n}.png"),))
        for i, n in enumerate(names)
    ]
    report = await harness.run(Provider.RIVYA, rows, settings=rooted(tmp_path / "refs"))
    seen = outcomes(harness)
    assert report.failed == 4 and not uploads
    assert "at most 30 MB" in seen["huge"][2]
    assert "not a JPEG, PNG or WebP" in seen["text"][2] and "not a JPEG, PNG or WebP" in seen["empty"][2]
    assert "not a file" in seen["pipe"][2]
