"""Hostile table and provider text in metadata markdown: rendered the way the Dagster UI renders it
(GFM: tables, raw HTML, autolink literals), no value becomes a link, an image, HTML or an extra column,
and each value still reads as it was written."""

from __future__ import annotations

import html
import io
import re

import pyarrow as pa
import pytest
from markdown_it import MarkdownIt
from PIL import Image

from nbpro_pipeline.cell.checks import check_accounting, check_stored_images, failed_prompts_markdown, prompts_resolved
from nbpro_pipeline.cell.state import cell_state
from nbpro_pipeline.costs import PriceTable
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.prompt import REJECTED_SCHEMA
from nbpro_pipeline.presentation import markdown as md
from nbpro_pipeline.presentation.contact_sheet import contact_sheet
from nbpro_pipeline.presentation.ledger_rows import ImageRef
from nbpro_pipeline.presentation.prompt_table_view import prompt_table_markdown
from nbpro_pipeline.presentation.report_tables import to_markdown
from nbpro_pipeline.prompts.result import PromptTableSummary, SourceFile
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage
from tests.costs.builders import ledger, record

HOSTILE = [
    "x](http://evil.example/a) ![b](http://host/beacon.png)",
    '<img src="http://host/beacon.png"> <script>alert(1)</script>',
    "a | b | c",
    "line\nbreak\r\n| --- |",
    "`code` ``two`` ```",
    "http://evil.example/x www.evil.example mail@evil.example",
    "[ref]: http://evil.example/ref",
    "# heading *em* _em_ ~~del~~ &amp; &#x3C;",
    "\\](http://evil.example)\\",
    "id\u202egnp.exe\u200b\ufeff",
]

# what the UI runs: CommonMark with raw HTML on, GFM tables and strikethrough, autolink literals
_RENDER = MarkdownIt("commonmark", {"linkify": True, "html": True}).enable(["table", "strikethrough", "linkify"])


def render(markdown: str) -> str:
    return _RENDER.render(markdown)


def assert_inert(rendered: str) -> None:
    """No link, no image other than our own data: thumbnails, no HTML element from the text."""
    assert "<a " not in rendered and "href=" not in rendered
    for src in re.findall(r'<img src="([^"]*)"', rendered):
        assert src.startswith("data:image/"), src
    assert "<script" not in rendered and '<img src="http' not in rendered
    assert "<h1" not in rendered and "<em" not in rendered and "<s>" not in rendered
    assert "\u202e" not in rendered and "\u200b" not in rendered


def shown(rendered: str) -> str:
    """The text a reader sees in rendered HTML."""
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


def visible(value: str) -> str:
    """How ``value`` should read: as written, on one line, invisible characters spelled out."""
    return md._visible(value, None).strip()


@pytest.mark.parametrize("value", HOSTILE)
def test_text_renders_literally_in_a_paragraph_a_list_and_a_table_cell(value):
    paragraph = render(md.text(value))
    assert_inert(paragraph)
    assert shown(paragraph) == visible(value)
    table = render(md.table(["id", "n"], [[md.text(value), "1"]]))
    assert_inert(table)
    assert table.count("<td>") == 2  # a pipe or a line break in the value adds no column and no row
    assert shown(re.search(r"<td>(.*?)</td>", table, re.S).group(1)) == visible(value)
    assert render(md.bullets([value])).count("<li>") == 1


@pytest.mark.parametrize("value", HOSTILE)
def test_code_spans_hold_any_value(value):
    out = render(md.code(value))
    assert_inert(out)
    assert out.count("<code>") == 1 and shown(out) == visible(value)


def test_invisible_characters_are_spelled_out():
    assert md.text("a\u202eb") == "aU\\+202Eb" and "U+200B" in md.code("x\u200by")
    assert md.code_block(["```", "ok"]).startswith("````\n")  # the fence outlasts any run inside


def _png(storage: Storage, name: str) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(buf, "PNG")
    path = storage.path("images", name)
    storage.write_bytes(path, buf.getvalue())
    return storage.uri(path)


def _hostile_state(storage: Storage):
    ok = [
        record(v, resolution="1K", image_uri=_png(storage, f"{i}.png"), width=40, height=30, fingerprint=f"ok{i}")
        for i, v in enumerate(HOSTILE)
    ]
    bad = [
        record(
            f"bad{i}{v}", resolution="1K", status="failed", error_code="provider_error", error_message=v,
            fingerprint=f"bad{i}",
        )
        for i, v in enumerate(HOSTILE)
    ]  # fmt: skip
    return cell_state(ledger(*ok, *bad), Provider.RIVYA, Resolution.R1K, PriceTable())


def test_contact_sheet_captions_are_inert_and_each_grid_keeps_its_columns(tmp_path):
    storage = Storage(str(tmp_path))
    state = _hostile_state(storage)
    sheet = contact_sheet(state.images, [], open_file=storage.fs.open, max_bytes=200_000)
    out = render(sheet)
    assert_inert(out)
    assert out.count('<img src="data:image/jpeg') == len(HOSTILE)
    for table in re.findall(r"<table>.*?</table>", out, re.S):
        head = len(re.findall(r"<th[ >]", table))
        assert all(len(re.findall(r"<td[ >]", r)) == head for r in re.findall(r"<tr>\s*<td.*?</tr>", table, re.S))
    assert "beacon.png" in out  # the caption is shown, as text


def test_failed_prompts_table_and_prompts_resolved_are_inert(tmp_path):
    state = _hostile_state(Storage(str(tmp_path)))
    table = render(failed_prompts_markdown(state, max_rows=50))
    assert_inert(table)
    assert table.count("<tr>") == len(HOSTILE) + 1
    assert all(len(re.findall(r"<td[ >]", r)) == 6 for r in re.findall(r"<tr>\s*<td.*?</tr>", table, re.S))
    check = prompts_resolved(state, HOSTILE)
    assert_inert(render(check.description))
    assert_inert(render(check.markdown["prompts"]))


def test_prompt_table_metadata_is_inert():
    rejected = pa.Table.from_pylist(
        [
            {"source_uri": f"/data/{v}.csv", "row_number": i + 1, "prompt_id": v, "provider": None,
             "column": v, "code": "id_invalid", "message": f"the id {v!r} is bad"}
            for i, v in enumerate(HOSTILE)
        ],
        schema=REJECTED_SCHEMA,
    )  # fmt: skip
    sources = [SourceFile(uri=f"/data/{v}.csv", format="csv", sha256=None, rows_read=1) for v in HOSTILE]
    summary = PromptTableSummary(
        rejected=rejected, sources=sources, rows_read=len(HOSTILE), accepted_rows=0, eligible={}
    )
    out = prompt_table_markdown(summary)
    for text in out.values():
        assert_inert(render(text))
    assert render(out["rejections"]).count("<li>") == len(HOSTILE)
    assert render(out["sources"]).count("<tr>") == len(HOSTILE) + 1


def test_report_tables_and_audit_descriptions_are_inert(tmp_path):
    import pandas as pd

    out = render(to_markdown(pd.DataFrame({"source": HOSTILE, "n": range(len(HOSTILE))})))
    assert_inert(out)
    assert out.count("<tr>") == len(HOSTILE) + 1
    accounting = check_accounting({f"fp{i}": v for i, v in enumerate(HOSTILE)}, ledger(record("other")))
    assert_inert(render(accounting.description))
    gone = ledger(*(record(v, image_uri=str(tmp_path / "none.png")) for v in HOSTILE[:5]))
    assert_inert(render(check_stored_images(gone).description))


def test_existing_thumbnail_refs_keep_unicode_ids_readable(tmp_path):
    storage = Storage(str(tmp_path))
    images = [ImageRef(prompt_id="é-ünïcode", uri=_png(storage, "u.png"))]
    assert "é-ünïcode" in render(contact_sheet(images, [], open_file=storage.fs.open))
