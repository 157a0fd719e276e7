"""Writes the bad-input corpus next to this script: small CSV, TSV, gzip and Parquet files, each with
one kind of damage and (mostly) valid rows around it. What each case must yield is the manifest in
``tests/prompts/test_bad_inputs.py``. Run ``python tests/data/bad_inputs/make_corpus.py`` after changing it;
the files are committed, so tests never depend on this script's environment. Cases that need big or
machine-specific files (a 30 MB reference, a huge cell, symlinks) are built by the test in tmp_path.
"""

from __future__ import annotations

# ruff: noqa: E501  (one case per line reads best)
import gzip
import io
import struct
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent
GOOD = "a red bicycle leaning on a wall"


def png(width: int = 4, height: int = 4) -> bytes:
    """A tiny valid PNG without Pillow."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\0" + b"\x80\x20\x20" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def cases() -> dict[str, bytes]:
    urls = [f"https://cdn.example/ref-{i}.png" for i in range(9)]
    good_pq = parquet(pa.table({"prompt": [GOOD, "a blue kite"], "id": ["g1", "g2"]}))
    return {
        # -- whole files --------------------------------------------------------------------------------------
        "empty.csv": b"",
        "blank_lines.csv": b"\n\n  \n",
        "header_only.csv": b"prompt,id,aspect_ratio\n",
        "no_prompt_column.csv": f"text,id\n{GOOD},a\n".encode(),
        "semicolon_header.csv": f"prompt;id\n{GOOD};a\n".encode(),
        "excel_sep_line.csv": f"sep=,\nprompt,id\n{GOOD},a\n".encode(),
        "duplicate_prompt_columns.csv": f"prompt,Prompt \n{GOOD},again\n".encode(),
        "utf16.csv": f"prompt\n{GOOD}\n".encode("utf-16"),
        "binary_garbage.csv": bytes((i * 7919 + 13) % 256 for i in range(3000)),
        "parquet_named_csv.csv": good_pq,
        "csv_named_parquet.parquet": f"prompt\n{GOOD}\n".encode(),
        "truncated.parquet": good_pq[: len(good_pq) // 2],
        "not_gzip.csv.gz": f"prompt\n{GOOD}\n".encode(),
        "truncated.csv.gz": gzip.compress(f"prompt\n{GOOD}\n{GOOD} again\n".encode() * 50)[:60],
        "unknown_extension.xlsx": b"PK\x03\x04 not really a workbook",
        "list_prompt.parquet": parquet(pa.table({"prompt": pa.array([[GOOD], ["b"]])})),
        "struct_aspect.parquet": parquet(pa.table({"prompt": [GOOD], "aspect_ratio": pa.array([{"w": 16, "h": 9}])})),
        "empty.parquet": parquet(pa.table({"prompt": pa.array([], pa.string())})),
        # -- encodings and CSV structure -----------------------------------------------------------------------
        "bom.csv": f"\ufeffprompt,id\n{GOOD},bom-1\n".encode(),
        "latin1.csv": f"prompt,id\n{GOOD},l1\ncafé crème on a table,l2\nnaïve art poster,l3\na green door,l4\n".encode(
            "latin-1"
        ),
        "latin1_ragged.csv": f"prompt,id\n{GOOD},r1\ncafé,r2,extra\na green door,r3\n".encode("latin-1"),
        "embedded_newlines_quotes.csv": (
            'prompt,id\n"a poster that says ""OPEN""\nin neon, with a comma",q1\n'
            f'plain "quoted" word inside,q2\n"{GOOD}",q3\n'
        ).encode(),
        "unterminated_quote_end.csv": f'id,prompt\nu1,{GOOD}\nu2,"never closed\nu3,a blue kite\nu4,x\n'.encode(),
        "unterminated_quote_fields.csv": f'prompt,id\n{GOOD},v1\n"never closed,v2\nmore,v3\n'.encode(),
        "ragged_rows.csv": f"prompt,id\n{GOOD},g1\ntoo,many,fields,here\nshort\na blue kite,g2\n".encode(),
        "mixed_delimiters.tsv": f"prompt\tid\n{GOOD}\tt1\na blue kite,t2\nsplit\tby\ttabs\n".encode(),
        "crlf_and_cr.csv": f"prompt,id\r\n{GOOD},c1\r\na blue kite,c2\r\n".encode(),
        "gzip_ok_with_bad_rows.csv.gz": gzip.compress(f"prompt,resolution\n{GOOD},2K\nbad res,8K\n".encode()),
        # -- values ---------------------------------------------------------------------------------------------
        "whitespace_prompt.csv": f'prompt,id\n"   ",w1\n"\t",w2\n{GOOD},w3\n'.encode(),
        "control_chars.csv": (
            f'prompt,id\n{GOOD},k1\nbell\x07 in prompt,k2\nnul\x00 in prompt,k3\n"line\nbreak\tand tab",k4\n'
        ).encode(),
        "prompt_lengths.csv": (
            f"prompt,id\n{'a' * 10001},long10001\n{'b' * 10000},max10000\n{'c' * 2501},long2501\n{'d' * 2500},max2500\n"
        ).encode(),
        "auto_for_odirouter.csv": f"prompt,aspect_ratio,provider\n{GOOD},auto,odirouter\n{GOOD},auto,\n{GOOD},16:9,\n".encode(),
        "unknown_aspect_ratio.csv": f"prompt,aspect_ratio\n{GOOD},7:5\n{GOOD},1.5\n{GOOD}, 16 : 9 \n".encode(),
        "bad_resolution.csv": f"prompt,resolution\n{GOOD},8K\n{GOOD},-1\n{GOOD},2.5\n{GOOD},2k\n".encode(),
        "unknown_output_format.csv": f"prompt,output_format\n{GOOD},gif\n{GOOD},webp\n{GOOD},jpg\n{GOOD},PNG\n".encode(),
        "unknown_provider.csv": f"prompt,provider\n{GOOD},openai\n{GOOD},Rivya\n".encode(),
        "numbers_where_text.parquet": parquet(
            pa.table({"prompt": [GOOD, "a blue kite"], "id": [-1, 2], "resolution": [-2, 1], "provider": [None, None]})
        ),
        "duplicate_ids.csv": f"id,prompt\nd1,{GOOD}\nd1,a blue kite\nd2,{GOOD}\nd2,{GOOD}\nd3,a green door\n".encode(),
        "bad_ids.csv": (
            f'id,prompt\n../../etc/passwd,{GOOD}\n"nul\x00id",b\n{"x" * 201},c\n"   ",d\nfine-id,e\n'
        ).encode(),
        "unknown_columns.csv": f"prompt,Colour,colour,,notes\n{GOOD},red,rot,,hello\n".encode(),
        "nine_references.csv": f"prompt,reference_images\n{GOOD},{'|'.join(urls)}\n{GOOD},{'|'.join(urls[:8])}\n".encode(),
        "bad_references.csv": (
            "prompt,reference_images,provider\n"
            "missing,refs/missing.png,rivya\n"
            "not image,refs/not_image.png,rivya\n"
            "ftp,ftp://example.com/a.png,\n"
            "file uri,file:///etc/hosts,\n"
            'data uri,"data:image/png;base64,iVBORw0KGgo=",\n'
            "javascript,javascript:alert(1),\n"
            "outside,/etc/hosts,rivya\n"
            "dotdot,refs/../../../../etc/hosts,rivya\n"
            "local for odirouter,refs/ok.png,\n"
            "url that 404s,https://cdn.example/does-not-exist.png,\n"
            f"{GOOD},refs/ok.png,rivya\n"
        ).encode(),
    }


def main() -> None:
    for name, data in cases().items():
        (HERE / name).write_bytes(data)
    (HERE / "refs").mkdir(exist_ok=True)
    (HERE / "refs/ok.png").write_bytes(png())
    (HERE / "refs/not_image.png").write_bytes(b"<html>a web page saved as .png</html>\n")


if __name__ == "__main__":
    main()
