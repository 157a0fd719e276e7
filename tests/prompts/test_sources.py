"""Reading: formats, globs, directories, fsspec URIs, headers, extra columns, unreadable files."""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nbpro_pipeline.models.prompt import ACCEPTED_SCHEMA, REJECTED_SCHEMA, PromptRow
from nbpro_pipeline.prompts import PromptTableError, load_prompt_tables
from tests.prompts.helpers import by_row, rejections

CSV = "prompt,aspect_ratio\na red fox,16:9\na blue whale,\n"


def test_csv_rows_are_normalized_into_the_accepted_schema(write, load):
    path = write("a.csv", CSV)
    result = load(path)
    assert result.accepted.schema.equals(ACCEPTED_SCHEMA) and result.rejected.schema.equals(REJECTED_SCHEMA)
    rows = by_row(result)
    assert [rows[1]["prompt"], rows[2]["prompt"]] == ["a red fox", "a blue whale"]
    assert rows[1]["aspect_ratio"] == "16:9" and rows[2]["aspect_ratio"] == "1:1"
    assert rows[1]["output_format"] == "png" and rows[1]["resolution"] is None and rows[1]["provider"] is None
    assert rows[1]["source_uri"] == str(path) and rows[1]["reference_images"] == []
    assert rows[1]["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert rows[1]["prompt_sha256"] == hashlib.sha256(b"a red fox").hexdigest()
    assert (
        ("rivya" in rows[1]["eligible_providers"])
        and ("odirouter" in rows[1]["eligible_providers"])
        and rows[1]["extra"] == "{}"
    )
    assert PromptRow.from_table(result.accepted)[0].prompt == "a red fox"
    (source,) = result.sources
    assert (source.format, source.rows_read, source.accepted, source.rejected) == ("csv", 2, 2, 0)
    assert source.sha256 == rows[1]["source_sha256"] and result.rows_read == 2 and result.rejected.num_rows == 0


@pytest.mark.parametrize(
    ("name", "encode"),
    [
        ("t.tsv", lambda text: text.replace(",", "\t").encode()),
        ("t.csv.gz", lambda text: gzip.compress(text.encode(), mtime=0)),
        ("t.tsv.gz", lambda text: gzip.compress(text.replace(",", "\t").encode(), mtime=0)),
    ],
)
def test_tsv_and_gzip_formats(write, load, name, encode):
    path = write(name, encode(CSV))
    result = load(path)
    assert [r["prompt"] for r in result.accepted.to_pylist()] == ["a red fox", "a blue whale"]
    assert result.sources[0].format == name.removeprefix("t.")
    assert result.sources[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()  # of the stored bytes


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_with_list_references_and_typed_extras(tmp_path, load, suffix):
    path = tmp_path / f"t{suffix}"
    pq.write_table(
        pa.table(
            {
                "Prompt": ["a", "b"],
                "reference_images": pa.array([["https://x.test/1.png"], None], pa.list_(pa.string())),
                "sku": pa.array([7, None], pa.int64()),
                "tags": pa.array([["x", "y"], []], pa.list_(pa.string())),
            }
        ),
        path,
    )
    rows = by_row(load(path))
    assert rows[1]["reference_images"] == ["https://x.test/1.png"] and rows[2]["reference_images"] == []
    assert json.loads(rows[1]["extra"]) == {"sku": "7", "tags": '["x", "y"]'}
    assert json.loads(rows[2]["extra"]) == {"sku": None, "tags": "[]"}


def test_parquet_non_string_prompt_cast_when_lossless_else_file_rejected(tmp_path, load):
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"prompt": pa.array([42, 7], pa.int64())}), numbers)
    assert [r["prompt"] for r in load(numbers).accepted.to_pylist()] == ["42", "7"]

    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"prompt": pa.array([["a"], ["b"]])}), nested)
    ok = tmp_path / "ok.csv"
    ok.write_text("prompt\nfine\n")
    result = load(nested, ok)
    assert rejections(result) == [(None, None, "prompt", "prompt_not_text")]
    assert "string column" in result.rejected_rows()[0].message and result.accepted.num_rows == 1
    with pytest.raises(PromptTableError, match="nested.parquet"):
        load(nested)


def test_binary_parquet_prompt_is_checked_for_utf8(tmp_path, load):
    path = tmp_path / "b.parquet"
    pq.write_table(pa.table({"prompt": pa.array([b"ok", b"bad \xff", "caf\u00e9".encode()], pa.binary())}), path)
    result = load(path)
    assert rejections(result) == [(2, None, "prompt", "encoding_invalid")]
    assert [r["prompt"] for r in result.accepted.to_pylist()] == ["ok", "caf\u00e9"]


def test_glob_and_directory_read_supported_files_sorted(write, load, tmp_path):
    write("dir/b.csv", "prompt\nfrom b\n")
    write("dir/a.tsv", "prompt\nfrom a\n")
    write("dir/notes.md", "# not a table\n")
    write("dir/refs/c.csv", "prompt\nnested, not read\n")
    from_dir = load(tmp_path / "dir")
    assert [s.uri for s in from_dir.sources] == [str(tmp_path / "dir/a.tsv"), str(tmp_path / "dir/b.csv")]
    assert [r["prompt"] for r in from_dir.accepted.to_pylist()] == ["from a", "from b"]
    from_glob = load(tmp_path / "dir/*.csv")
    assert [r["prompt"] for r in from_glob.accepted.to_pylist()] == ["from b"]
    both = load(tmp_path / "dir/*", tmp_path / "dir/b.csv")  # each file once
    assert [s.uri for s in both.sources] == [s.uri for s in from_dir.sources]


def test_sources_given_as_relative_paths_are_reported_absolute(write, monkeypatch, tmp_path):
    write("rel.csv", CSV)
    monkeypatch.chdir(tmp_path)
    result = load_prompt_tables(["rel.csv"])
    assert result.sources[0].uri == str(tmp_path / "rel.csv")
    assert result.accepted.column("source_uri").to_pylist() == [str(tmp_path / "rel.csv")] * 2


def test_empty_sources_and_globs_matching_nothing_raise(tmp_path, load):
    with pytest.raises(PromptTableError, match="no prompt table sources"):
        load_prompt_tables([])
    with pytest.raises(PromptTableError, match=r"nothing\*\.csv.*matches no prompt table"):
        load(tmp_path / "nothing*.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PromptTableError, match="holds no prompt table"):
        load(tmp_path / "empty")


def test_bom_and_header_spelling(write, load):
    path = write("bom.csv", "\ufeff Prompt ,Aspect Ratio,OUTPUT_FORMAT,Provider\nhello,16:9,JPEG,Rivya\n")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    (row,) = load(path).accepted.to_pylist()
    assert (row["prompt"], row["aspect_ratio"], row["output_format"], row["provider"]) == (
        "hello",
        "16:9",
        "jpg",
        "rivya",
    )
    assert row["extra"] == "{}"


def test_bom_on_an_extra_first_column(write, load):
    (row,) = load(write("bom2.csv", "\ufeffcampaign,prompt\nspring,hello\n")).accepted.to_pylist()
    assert json.loads(row["extra"]) == {"campaign": "spring"}


def test_extra_columns_kept_untouched_as_json(write, load):
    path = write(
        "x.csv",
        'prompt,campaign,Notes,"we""ird"\na,spring,"line1\nline2 \\ ""quoted""",007\nb,, keep spaces ,\n',
    )
    rows = by_row(load(path))
    assert json.loads(rows[1]["extra"]) == {"campaign": "spring", "Notes": 'line1\nline2 \\ "quoted"', 'we"ird': "007"}
    assert json.loads(rows[2]["extra"]) == {"campaign": "", "Notes": " keep spaces ", 'we"ird': ""}
    assert list(json.loads(rows[1]["extra"])) == ["campaign", "Notes", 'we"ird']  # file order


def test_extra_values_with_control_characters_are_valid_json(write, load):
    (row,) = load(write("c.csv", 'prompt,note\na,"bell\x07 tab\t cr\r"\n')).accepted.to_pylist()
    assert json.loads(row["extra"]) == {"note": "bell\x07 tab\t cr\r"}


def test_embedded_newlines_and_quotes_in_prompts(write, load):
    path = write("q.csv", 'prompt,id\n"a poster that says ""HELLO""\nwith two lines",p1\nplain,p2\n')
    rows = by_row(load(path))
    assert rows[1]["prompt"] == 'a poster that says "HELLO"\nwith two lines' and rows[2]["prompt"] == "plain"


def test_values_are_read_as_text_never_inferred(write, load):
    (row,) = load(write("t.csv", "prompt,id,zip\n123,007,00501\n")).accepted.to_pylist()
    assert (row["prompt"], row["prompt_id"], json.loads(row["extra"])) == ("123", "007", {"zip": "00501"})


def test_csv_with_nul_or_na_text_keeps_it(write, load):
    rows = by_row(load(write("na.csv", "prompt,note\nNA,null\nN/A,\n")))
    assert rows[1]["prompt"] == "NA" and json.loads(rows[1]["extra"]) == {"note": "null"}


def test_memory_fsspec_source():
    fs = fsspec.filesystem("memory")
    root = f"/nbpro-test-{uuid.uuid4().hex}"
    fs.pipe(f"{root}/a.csv", b"prompt\nfrom memory\n")
    fs.pipe(f"{root}/b.tsv", b"prompt\tresolution\nsecond\t2k\n")
    try:
        single = load_prompt_tables([f"memory://{root}/a.csv"])
        (row,) = single.accepted.to_pylist()
        assert row["prompt"] == "from memory" and row["source_uri"].startswith("memory://")
        many = load_prompt_tables([f"memory://{root}/*"])
        assert [r["prompt"] for r in many.accepted.to_pylist()] == ["from memory", "second"]
        assert many.accepted.column("resolution").to_pylist() == [None, "2K"]
        assert load_prompt_tables([f"memory://{root}"]).rows_read == 2  # a "directory"
    finally:
        fs.rm(root, recursive=True)


def test_unreadable_file_does_not_stop_the_others(write, load, tmp_path):
    good = write("good.csv", CSV)
    no_prompt = write("noprompt.csv", "text,aspect_ratio\nx,1:1\n")
    broken = write("broken.parquet", b"PAR1 this is not parquet")
    odd = write("table.xlsx", b"PK\x03\x04")
    empty = write("empty.csv", "")
    missing = tmp_path / "missing.csv"
    result = load(good, no_prompt, broken, odd, empty, missing)
    assert result.accepted.num_rows == 2 and result.rows_read == 2
    assert rejections(result) == [
        (None, None, "prompt", "prompt_column_missing"),
        (None, None, None, "unreadable_file"),
        (None, None, None, "format_unknown"),
        (None, None, None, "unreadable_file"),
        (None, None, None, "unreadable_file"),
    ]
    messages = {r.source_uri: r.message for r in result.rejected_rows()}
    assert "'text'" in messages[str(no_prompt)] and "header" in messages[str(no_prompt)]
    assert "Parquet" in messages[str(broken)]
    assert ".csv" in messages[str(odd)] and "empty" in messages[str(empty)]
    assert "does not exist" in messages[str(missing)]
    assert [s.error is None for s in result.sources] == [True, False, False, False, False, False]
    assert [s.uri for s in result.unreadable] == [str(p) for p in (no_prompt, broken, odd, empty, missing)]


def test_unknown_fsspec_protocol_is_a_file_level_rejection(write, load):
    result = load(write("ok.csv", CSV), "nosuchproto://bucket/a.csv")
    assert result.accepted.num_rows == 2
    assert rejections(result)[-1] == (None, None, None, "unreadable_file")
    assert result.rejected_rows()[-1].source_uri == "nosuchproto://bucket/a.csv"
    assert "cannot open it" in result.rejected_rows()[-1].message


def test_nothing_readable_raises_naming_each_file(write, tmp_path, load):
    bad = write("bad.csv", "text\nx\n")
    with pytest.raises(PromptTableError) as info:
        load(bad, tmp_path / "missing.csv")
    assert "bad.csv" in str(info.value) and "missing.csv" in str(info.value) and "'prompt'" in str(info.value)


def test_non_utf8_header_and_utf16_files_are_file_level_rejections(write, load):
    latin1_header = write("h.csv", b"pr\xf6mpt,prompt\nx,y\n")
    utf16 = write("u16.csv", "prompt\nhello\n".encode("utf-16"))
    result = load(latin1_header, utf16, write("ok.csv", CSV))
    assert rejections(result)[:2] == [(None, None, None, "unreadable_file")] * 2
    first, second = result.rejected_rows()[:2]
    assert "header row is not valid UTF-8" in first.message and "UTF-16" in second.message
    assert result.accepted.num_rows == 2


def test_two_columns_meaning_the_same_thing_reject_the_file(write, load):
    result = load(write("dup.csv", "prompt,Prompt \na,b\n"), write("ok.csv", CSV))
    assert rejections(result)[0] == (None, None, "prompt", "column_duplicate")


def test_header_only_file_has_no_rows(write, load):
    result = load(write("h.csv", "prompt,id\n"), write("ok.csv", CSV))
    assert result.sources[0].rows_read == 0 and result.accepted.num_rows == 2


def test_blank_trailing_header_column_is_dropped(write, load):
    rows = by_row(load(write("trail.csv", "prompt,campaign,\na,x,\nb,y,\n")))
    assert json.loads(rows[1]["extra"]) == {"campaign": "x"}
