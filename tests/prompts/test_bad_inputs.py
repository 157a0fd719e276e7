"""The bad-input corpus (``tests/data/bad_inputs/``, written by its ``make_corpus.py``): every case goes
through ``load_prompt_tables`` and through ``nbpro validate``. Each must give the rejections of the
manifest below, with messages naming the file, the row and the column and saying what to do; valid
rows mixed into the damaged files must all survive; nothing may print a traceback.

Manifest entry: ``accepted`` rows, the expected ``(row, provider, column, code)`` entries in order (row
None: the whole file), and substrings the messages must contain (what is wrong and what to do).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from nbpro_pipeline.cli import main
from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.prompts import load_prompt_tables
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.providers.rivya.traits import MAX_FILE_BYTES as RIVYA_MAX_FILE_BYTES
from nbpro_pipeline.storage.filesystem import Storage
from tests.prompts.helpers import png_bytes, rejections

CORPUS = Path(__file__).parents[1] / "data" / "bad_inputs"
REF = "reference_images"


@dataclass(frozen=True)
class Case:
    accepted: int
    entries: list[tuple[int | None, str | None, str | None, str]]
    says: list[str] = field(default_factory=list)


def whole_file(code: str, *says: str, column: str | None = None) -> Case:
    return Case(0, [(None, None, column, code)], list(says))


MANIFEST: dict[str, Case] = {
    # -- whole files: one file-level entry; the other tables of the load are still read -----------------------
    "empty.csv": whole_file("unreadable_file", "the file is empty", "header row with a 'prompt' column"),
    "blank_lines.csv": whole_file("unreadable_file", "the file is empty"),
    "header_only.csv": whole_file("table_empty", "no data rows", "add prompts under the header"),
    "empty.parquet": whole_file("table_empty", "no rows"),
    "no_prompt_column.csv": whole_file(
        "prompt_column_missing", "'text', 'id'", "naming a 'prompt' column", column="prompt"
    ),
    "semicolon_header.csv": whole_file(
        "prompt_column_missing", "separated by ';'", ".csv files must use ','", column="prompt"
    ),
    "excel_sep_line.csv": whole_file("prompt_column_missing", "'sep=' line", "delete it", column="prompt"),
    "duplicate_prompt_columns.csv": whole_file(
        "column_duplicate", "'prompt' and 'Prompt '", "keep one", column="prompt"
    ),
    "utf16.csv": whole_file("unreadable_file", "UTF-16", "save it as UTF-8"),
    "binary_garbage.csv": whole_file("unreadable_file", "binary, not CSV text"),
    "parquet_named_csv.csv": whole_file("unreadable_file", "a Parquet file", "name it .parquet"),
    "csv_named_parquet.parquet": whole_file("unreadable_file", "not a readable Parquet file", "name it .csv"),
    "truncated.parquet": whole_file("unreadable_file", "not a readable Parquet file", "truncated"),
    "not_gzip.csv.gz": whole_file("unreadable_file", "not a valid gzip file", "drop the .gz suffix"),
    "truncated.csv.gz": whole_file("unreadable_file", "not a valid gzip file"),
    "unknown_extension.xlsx": whole_file("format_unknown", "unknown file type", ".csv"),
    "list_prompt.parquet": whole_file("prompt_not_text", "list<", "string column", column="prompt"),
    "struct_aspect.parquet": whole_file("column_not_text", "struct<", "string column", column="aspect_ratio"),
    # -- encodings and structure --------------------------------------------------------------------------------
    "bom.csv": Case(1, []),
    "crlf_and_cr.csv": Case(2, []),
    "embedded_newlines_quotes.csv": Case(3, []),
    "latin1.csv": Case(
        2,
        [(2, None, "prompt", "encoding_invalid"), (3, None, "prompt", "encoding_invalid")],
        ["save the table as UTF-8"],
    ),
    # non-UTF-8 bytes inside a malformed row used to make pyarrow give up on the whole file (and print a traceback)
    "latin1_ragged.csv": Case(2, [(2, None, None, "row_malformed")], ["3 fields where the header has 2"]),
    # an unclosed quote used to swallow the rest of the file silently, rows and all
    "unterminated_quote_end.csv": Case(1, [(2, None, None, "row_malformed")], ["never closed", "3 more line(s)"]),
    "unterminated_quote_fields.csv": Case(1, [(2, None, None, "row_malformed")], ["never closed", "close the quote"]),
    "ragged_rows.csv": Case(
        2,
        [(2, None, None, "row_malformed"), (3, None, None, "row_malformed")],
        ["4 fields", "1 fields", "quote fields"],
    ),
    "mixed_delimiters.tsv": Case(
        1, [(2, None, None, "row_malformed"), (3, None, None, "row_malformed")], ["delimiter '\\t'"]
    ),
    "gzip_ok_with_bad_rows.csv.gz": Case(1, [(2, None, "resolution", "resolution_unknown")], ["'8K'", "1K, 2K, 4K"]),
    # -- values -----------------------------------------------------------------------------------------------------
    "whitespace_prompt.csv": Case(
        1,
        [(1, None, "prompt", "prompt_empty"), (2, None, "prompt", "prompt_empty")],
        ["write what the image should show"],
    ),
    "control_chars.csv": Case(
        2,
        [(2, None, "prompt", "prompt_control_chars"), (3, None, "prompt", "prompt_control_chars")],
        ["U+0007", "U+0000", "remove it"],
    ),
    "prompt_lengths.csv": Case(
        3,
        [
            (1, None, "prompt", "prompt_too_long"),
            (2, "odirouter", "prompt", "prompt_too_long"),
            (3, "odirouter", "prompt", "prompt_too_long"),
        ],
        ["10001 characters", "Rivya accepts at most 10000", "2501 characters", "shorten it by at least 1"],
    ),
    "auto_for_odirouter.csv": Case(
        2,
        [
            (1, "odirouter", "aspect_ratio", "aspect_ratio_unsupported"),
            (2, "odirouter", "aspect_ratio", "aspect_ratio_unsupported"),
        ],
        ["'auto' exists only on Rivya"],
    ),
    "unknown_aspect_ratio.csv": Case(
        1,
        [(1, None, "aspect_ratio", "aspect_ratio_unknown"), (2, None, "aspect_ratio", "aspect_ratio_unknown")],
        ["'7:5'", "'1.5'"],
    ),
    "bad_resolution.csv": Case(
        1,
        [(n, None, "resolution", "resolution_unknown") for n in (1, 2, 3)],
        ["'8K'", "'-1'", "'2.5'", "leave it empty"],
    ),
    "unknown_output_format.csv": Case(
        2,
        [
            (1, None, "output_format", "output_format_unknown"),
            (2, None, "output_format", "output_format_unknown"),
            (3, "odirouter", "output_format", "output_format_unsupported"),
        ],
        ["'gif'", "'webp'", "png, jpg"],
    ),
    "unknown_provider.csv": Case(1, [(1, None, "provider", "provider_unknown")], ["'openai'"]),
    "numbers_where_text.parquet": Case(
        0,
        [(1, None, "resolution", "resolution_unknown"), (2, None, "resolution", "resolution_unknown")],
        ["'-2'", "'1'"],
    ),
    "duplicate_ids.csv": Case(
        2,
        [
            (1, None, "id", "duplicate_id_conflict"),
            (2, None, "id", "duplicate_id_conflict"),
            (4, None, "id", "duplicate_row"),
        ],
        ["'d1' is also used by row 2", "different prompt", "'d2' with the same prompt", "delete this row"],
    ),
    # an id like ../../etc/passwd is kept as written: storage names files safely (checked below)
    "bad_ids.csv": Case(
        2,
        [(2, None, "id", "id_invalid"), (3, None, "id", "id_invalid"), (4, None, "id", "id_invalid")],
        ["control character U+", "201 characters", "only whitespace"],
    ),
    "unknown_columns.csv": Case(1, []),
    "nine_references.csv": Case(2, [(1, "rivya", REF, "too_many_references")], ["9 reference images", "at most 8"]),
    # validation never fetches URLs: one that 404s passes here and fails its row at upload (tests/engine)
    "bad_references.csv": Case(
        3,
        [
            (1, None, REF, "reference_unreadable"),
            (2, None, REF, "reference_not_image"),
            (3, None, REF, "reference_url_scheme"),
            (4, None, REF, "reference_url_scheme"),
            (5, None, REF, "reference_url_scheme"),
            (6, None, REF, "reference_url_scheme"),
            (7, None, REF, "reference_outside_roots"),
            (8, None, REF, "reference_outside_roots"),
            (9, "odirouter", REF, "reference_needs_url"),
        ],
        ["no file at", "not a JPEG, PNG or WebP", "ftp: references", "without 'file://'", "data: references"]
        + [
            "javascript: references",
            "outside the allowed reference roots",
            "--reference-root",
            "host it at an http(s) URL",
        ],
    ),
}


def corpus_files() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if p.is_file() and p.name != "make_corpus.py")


def test_the_corpus_is_what_the_manifest_describes():
    assert corpus_files() == sorted(MANIFEST) and len(MANIFEST) >= 30
    assert sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file()) < 1_000_000


@pytest.fixture
def good(tmp_path) -> Path:
    """A clean table loaded alongside each case: a damaged file must not sink it."""
    path = tmp_path / "good.csv"
    path.write_text("prompt\na clean row\n")
    return path


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_loader(name, good):
    case, path = MANIFEST[name], CORPUS / name
    result = load_prompt_tables([str(path), str(good)])
    assert rejections(result) == case.entries
    assert result.accepted.num_rows == case.accepted + 1, "a valid row was dropped (or a bad one kept)"
    assert str(good) in result.accepted.column("source_uri").to_pylist()
    messages = " | ".join(r.message for r in result.rejected_rows())
    for text in case.says:
        assert text in messages
    for row in result.rejected_rows():
        assert row.source_uri == str(path)
        assert len(row.message) > 30 and ";" in row.message, f"no 'what to do' in {row.message!r}"


def _row_lines(name: str) -> list[str]:
    path = CORPUS / name
    out = []
    for row, provider, column, code in MANIFEST[name].entries:
        where = f"{path}" + (f", row {row}" if row is not None else "") + (f", column {column!r}" if column else "")
        out.append(f"{where}: {code}" + (f" (for {provider} only)" if provider else ""))
    return out


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_cli(name, good):
    path, case = CORPUS / name, MANIFEST[name]
    result = CliRunner().invoke(main, ["validate", str(path), str(good)])
    text = result.output + (result.stderr or "")
    assert result.exception is None or isinstance(result.exception, SystemExit), text
    assert "Traceback" not in text
    file_level = any(row is None for row, *_ in case.entries)
    assert result.exit_code == (2 if file_level else 1 if case.entries else 0), text
    if file_level:
        assert f"{path}: UNREADABLE: " in text
    for line in _row_lines(name):
        if ", row " in line:
            assert line in text
    assert f"{good} (csv" in text


@pytest.mark.external
def test_cli_on_the_whole_corpus_in_a_real_process():
    """One real process over every case: stderr is the real one, so pyarrow's "Exception ignored"
    tracebacks (printed outside Python's exception flow) would show here."""
    done = subprocess.run(
        [sys.executable, "-m", "nbpro_pipeline.cli", "validate", str(CORPUS), "--limit", "1000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in text and "Exception ignored" not in text
    tables = {n: c for n, c in MANIFEST.items() if not n.endswith(".xlsx")}  # a directory load skips those
    unreadable = sum(1 for case in tables.values() if any(r is None for r, *_ in case.entries))
    assert f"{unreadable} unreadable file(s)" in text
    for name in tables:
        assert str(CORPUS / name) in text


def test_path_like_ids_are_kept_and_stay_inside_the_storage_root(tmp_path):
    result = load_prompt_tables([str(CORPUS / "bad_ids.csv")])
    ids = result.accepted.column("prompt_id").to_pylist()
    assert "../../etc/passwd" in ids
    storage = Storage(tmp_path / "store")
    for pid in ids:
        where = Path(storage.image_path(Provider.RIVYA, Resolution.R1K, pid, "f" * 64, "png")).resolve()
        assert where.is_relative_to((tmp_path / "store").resolve())


def test_huge_cells_are_rejected_by_length_not_by_memory(tmp_path, good):
    path = tmp_path / "huge.csv"
    with open(path, "w") as handle:
        handle.write("prompt,notes\n")
        handle.write("a fine prompt," + "n" * 5_000_000 + "\n")  # a 5 MB extra cell is carried, untouched
        handle.write('"' + "p\n" * 1_500_000 + '",x\n')  # quoted newlines across pyarrow's 1 MB blocks
        handle.write("another fine prompt,\n")
    result = load_prompt_tables([str(path), str(good)])
    assert rejections(result) == [(2, None, "prompt", "prompt_too_long")]
    assert "2999999 characters" in result.rejected_rows()[0].message
    assert result.accepted.num_rows == 3


def test_references_too_large_symlinked_out_or_outside_configured_roots(tmp_path, good):
    """Cases that need machine-specific files: a sparse 30 MB + 1 byte image, a symlink out of the root."""
    table_dir = tmp_path / "tables"
    (table_dir / "refs").mkdir(parents=True)
    (tmp_path / "private").mkdir()
    (table_dir / "refs/ok.png").write_bytes(png_bytes())
    (tmp_path / "private/secret.png").write_bytes(png_bytes())
    os.symlink(tmp_path / "private/secret.png", table_dir / "refs/escape.png")
    with open(table_dir / "refs/huge.png", "wb") as handle:
        handle.write(png_bytes())
        handle.truncate(RIVYA_MAX_FILE_BYTES + 1)
    shutil.copy(CORPUS / "refs/ok.png", table_dir / "refs/tiny.png")
    path = table_dir / "t.csv"
    path.write_text(
        "prompt,reference_images,provider\n"
        "huge,refs/huge.png,rivya\n"
        "symlink out,refs/escape.png,rivya\n"
        f"absolute out,{tmp_path / 'private/secret.png'},rivya\n"
        f"file uri out,file://{tmp_path / 'private/secret.png'},rivya\n"
        "fine,refs/ok.png|refs/tiny.png,rivya\n"
    )
    expected = [
        (1, None, REF, "reference_too_large"),
        (2, None, REF, "reference_outside_roots"),
        (3, None, REF, "reference_outside_roots"),
        (4, None, REF, "reference_url_scheme"),
    ]
    for roots in (None, [str(table_dir / "refs")]):  # the table's folder by default, or the configured roots
        result = load_prompt_tables([str(path), str(good)], reference_roots=roots)
        assert rejections(result) == expected
        assert result.accepted.num_rows == 2
        assert "30 MB" in result.rejected_rows()[0].message
    remote_like = load_prompt_tables([str(path)], reference_roots=[str(tmp_path / "elsewhere")])
    assert [r[3] for r in rejections(remote_like)].count("reference_outside_roots") == 4
