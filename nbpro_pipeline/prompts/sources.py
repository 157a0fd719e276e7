"""Finding prompt table files and reading each into one column-normalized Arrow table.

Reading never validates values (that is ``validate``'s job) except for what only the reader can see:
bytes that are not UTF-8 (``encoding_invalid``) and CSV rows with the wrong number of fields
(``row_malformed``). Everything is columnar: pyarrow parses the file, pyarrow.compute maps it.

A staged table has the columns of ``STAGED_SCHEMA``: the known columns as raw strings (null when the
file lacks the column), ``reference_images`` as raw list entries, ``extra`` as a JSON object of every
other column, the 1-based ``row_number`` and, for rows the reader already condemned, ``pre_code``,
``pre_column`` and ``pre_detail``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.prompts.result import PromptTableError
from nbpro_pipeline.references_policy import is_object_uri

FORMATS: dict[str, str] = {
    ".csv.gz": "csv.gz",
    ".tsv.gz": "tsv.gz",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
KNOWN_COLUMNS = ("prompt", "id", "aspect_ratio", "resolution", "output_format", "provider", "reference_images")
TEXT_COLUMNS = ("prompt", "id", "aspect_ratio", "resolution", "output_format", "provider")

STAGED_SCHEMA = pa.schema(
    [
        *(pa.field(name, pa.string()) for name in TEXT_COLUMNS),
        pa.field("reference_images", pa.list_(pa.string())),
        pa.field("extra", pa.string()),
        pa.field("row_number", pa.int64()),
        pa.field("pre_code", pa.string()),
        pa.field("pre_column", pa.string()),
        pa.field("pre_detail", pa.string()),
    ]
)

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")
_GLOB_CHARS = re.compile(r"[*?\[]")
_PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")


class FileProblem(Exception):
    """A whole file cannot be used; becomes a file-level rejected row (``row_number`` null)."""

    def __init__(self, code: str, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.column = column


@dataclass(frozen=True)
class SourceRef:
    """One file to read: ``uri`` is an absolute local path or an fsspec URI; ``path`` is within ``fs``."""

    uri: str
    fs: Any  # fsspec AbstractFileSystem; None when the source could not even be opened
    path: str
    local: bool
    error: str | None = None  # why the source could not be opened (no fsspec driver, store unreachable)

    @property
    def format(self) -> str | None:
        return detect_format(self.path)

    @property
    def base_dir(self) -> str | None:
        """Directory that relative reference paths resolve against: the folder of a local table, the prefix
        of a table on an object store; None for other remote tables (http, memory, ...)."""
        if self.local:
            return os.path.dirname(self.uri)
        return self.uri.rsplit("/", 1)[0] if is_object_uri(self.uri) else None


@dataclass
class StagedFile:
    ref: SourceRef
    format: str
    sha256: str
    table: pa.Table  # STAGED_SCHEMA
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (row_number, what is wrong)
    rows_read: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows_read = self.table.num_rows + len(self.malformed)

    def release(self) -> None:
        """Drop the rows (once handed to validation, so that they are not held twice); counts stay."""
        self.table = self.table.schema.empty_table()


def detect_format(path: str) -> str | None:
    lower = path.lower()
    for suffix, fmt in FORMATS.items():
        if lower.endswith(suffix):
            return fmt
    return None


def _supported(path: str) -> bool:
    return detect_format(path) is not None


# ---------------------------------------------------------------------------------------------------------------
# Finding files


def resolve_sources(sources: list[str], storage_options: dict | None = None) -> list[SourceRef]:
    """Expand paths, globs, directories and URIs into files, in the order given, each file once.

    Raises ``PromptTableError`` when ``sources`` is empty, or a glob or a directory holds no table file:
    both are configuration mistakes, not bad data. A plain path that does not exist is returned as is;
    reading it fails later and becomes a file-level rejection that does not stop the other files.
    """
    if not sources:
        raise PromptTableError("no prompt table sources given; pass at least one path, glob, directory or URI")
    found: list[SourceRef] = []
    for source in sources:
        source = str(source)
        try:
            found.extend(_expand(source, storage_options))
        except PromptTableError:
            raise
        except Exception as exc:  # a missing fsspec driver, bad credentials, an unreachable store: this source only
            found.append(SourceRef(source, None, source, False, error=f"cannot open it: {type(exc).__name__}: {exc}"))
    unique: dict[str, SourceRef] = {}
    for ref in found:
        unique.setdefault(ref.uri, ref)
    return list(unique.values())


def _expand(source: str, storage_options: dict | None) -> list[SourceRef]:
    from fsspec.implementations.local import LocalFileSystem

    from nbpro_pipeline.storage.filesystem import url_to_fs  # fresh listings: the sensor asks every tick

    if _URI.match(source):
        fs, path = url_to_fs(source, storage_options)
        local = bool({"file", "local"} & set(_protocols(fs)))
        path = os.path.abspath(path) if local else path
    else:
        fs, path, local = LocalFileSystem(), os.path.abspath(os.path.expanduser(source)), True

    def ref(p: str) -> SourceRef:
        return SourceRef(os.path.abspath(p) if local else fs.unstrip_protocol(p), fs, p, local)

    if _GLOB_CHARS.search(path):
        matches = sorted(p for p in fs.glob(path) if _supported(p) and not _isdir(fs, p))
        if not matches:
            raise PromptTableError(
                f"{source}: the pattern matches no prompt table; check it, and note that only "
                f"{', '.join(FORMATS)} files are read"
            )
        return [ref(p) for p in matches]
    if _isdir(fs, path):
        # top level only: a refs/ sub-folder holds images, not tables
        matches = sorted(p for p in fs.ls(path, detail=False) if _supported(p) and not _isdir(fs, p))
        if not matches:
            raise PromptTableError(
                f"{source}: the directory holds no prompt table ({', '.join(FORMATS)} files at its top level)"
            )
        return [ref(p) for p in matches]
    return [ref(path)]


def _protocols(fs: Any) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _isdir(fs: Any, path: str) -> bool:
    try:
        return bool(fs.isdir(path))
    except Exception:  # a store that cannot answer: treat it as a file and let reading report the problem
        return False


# ---------------------------------------------------------------------------------------------------------------
# Reading one file


def read_bytes(ref: SourceRef) -> bytes:
    if ref.error is not None:
        raise FileProblem("unreadable_file", ref.error)
    try:
        return ref.fs.cat_file(ref.path)
    except FileNotFoundError as exc:
        raise FileProblem("unreadable_file", "the file does not exist; check the path or the pattern") from exc
    except IsADirectoryError as exc:
        raise FileProblem("unreadable_file", "this is a directory; pass it as a directory or a glob") from exc
    except PermissionError as exc:
        raise FileProblem("unreadable_file", f"permission denied ({exc}); make the file readable") from exc
    except Exception as exc:  # any storage error is reported against this file only
        raise FileProblem("unreadable_file", f"cannot read the file: {type(exc).__name__}: {exc}") from exc


def read_source(ref: SourceRef) -> StagedFile:
    """Read and stage one file; raises ``FileProblem`` when the file as a whole cannot be used."""
    if ref.error is not None:
        raise FileProblem("unreadable_file", ref.error)
    fmt = ref.format
    if fmt is None:
        raise FileProblem(
            "format_unknown",
            f"unknown file type; name prompt tables {', '.join(FORMATS)} (the extension picks the reader)",
        )
    data = read_bytes(ref)
    sha256 = hashlib.sha256(data).hexdigest()
    if fmt.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileProblem(
                "unreadable_file", f"not a valid gzip file ({exc}); re-compress it or drop the .gz suffix"
            ) from exc
    if fmt == "parquet":
        columns, n, row_numbers, malformed = _parse_parquet(data)
    else:
        columns, n, row_numbers, malformed = _parse_csv(data, "\t" if fmt.startswith("tsv") else ",")
    del data  # the parsed columns are all that is needed from here on
    if n == 0 and not malformed:
        raise FileProblem(
            "table_empty",
            "the file has a header but no data rows; add prompts under the header, or remove the file from the sources"
            if fmt != "parquet"
            else "the file has no rows; write the prompts into it, or remove it from the sources",
        )
    table = _stage(columns, n, row_numbers)
    return StagedFile(ref=ref, format=fmt, sha256=sha256, table=table, malformed=malformed)


_MAGIC = (
    (b"PAR1", "a Parquet file; name it .parquet"),
    (b"\x1f\x8b", "gzip-compressed; name it .csv.gz or .tsv.gz"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx?); export the sheet as 'CSV UTF-8'"),
    (b"%PDF", "a PDF document; export the table as CSV UTF-8"),
    (b"\x89PNG", "a PNG image, not a table"),
    (b"\xff\xd8\xff", "a JPEG image, not a table"),
)


def _refuse_binary(data: bytes, fmt: str) -> None:
    """A file that is not text at all gets one clear file-level reason instead of a parser error full of
    garbage: known signatures name what the file is; otherwise, more than 10% of the first 4 KB being
    undecodable or control bytes means binary (a Latin-1 table or one NUL in a cell stays far below)."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise FileProblem("unreadable_file", f"this is {what}, not {fmt} text")
    head = data[:4096].decode("utf-8", errors="replace")
    odd = sum(1 for ch in head if ch == "\ufffd" or (ch < " " and ch not in "\t\n\r"))
    if head and odd > len(head) / 10:
        raise FileProblem(
            "unreadable_file",
            f"the file is binary, not {fmt} text ({odd} of its first {len(head)} characters are not text); "
            "export the table as CSV UTF-8, or name a Parquet file .parquet",
        )


def _parse_csv(
    data: bytes, delimiter: str
) -> tuple[list[tuple[str, pa.ChunkedArray]], int, np.ndarray | None, list[tuple[int, str]]]:
    """Every column as binary (UTF-8 is checked per row later), quoted newlines allowed, BOM skipped.

    A row with the wrong number of fields is skipped by the parser and reported as ``row_malformed``.
    Its number comes from a second, single-threaded parse (the only mode in which pyarrow knows it),
    so the common, clean file is parsed once with threads.
    """
    import pyarrow.csv as pcsv

    if not data or data.isspace():
        raise FileProblem("unreadable_file", "the file is empty; it needs a header row with a 'prompt' column")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileProblem("unreadable_file", "the file is UTF-16 text; save it as UTF-8 (in Excel: 'CSV UTF-8')")
    _refuse_binary(data, "TSV" if delimiter == "\t" else "CSV")

    block_size: list[int | None] = [None]  # pyarrow's default (1 MB), until a cell is bigger than a block

    def parse(threads: bool, names: list[str] | None) -> tuple[pa.Table, list[tuple[int | None, str, int, int]]]:
        bad: list[tuple[int | None, str, int, int]] = []

        def on_invalid(row: Any) -> str:
            bad.append((row.number, row.text, row.expected_columns, row.actual_columns))
            return "skip"

        convert = pcsv.ConvertOptions(
            column_types={n: pa.binary() for n in names} if names else None,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[],
            check_utf8=False,
        )
        options = {
            "read_options": pcsv.ReadOptions(
                use_threads=threads, **({"block_size": block_size[0]} if block_size[0] else {})
            ),
            "parse_options": pcsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            "convert_options": convert,
        }
        if names is None:  # only the header is wanted: parse the first block
            with pcsv.open_csv(io.BytesIO(data), **options) as reader:
                return pa.Table.from_batches([], schema=reader.schema), bad
        return pcsv.read_csv(io.BytesIO(data), **options), bad

    def parse_all(data: bytes) -> tuple[list[str], pa.Table, list[tuple[int | None, str, int, int]]]:
        try:
            header, _ = parse(False, None)
            names = header.schema.names
            table, bad = parse(True, names)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or block_size[0]:
                raise
            # a quoted value with newlines longer than a block (a huge cell): read the file as one block
            block_size[0] = min(len(data) + 1, (1 << 31) - 1)
            header, _ = parse(False, None)
            names = header.schema.names
            table, bad = parse(True, names)
        if bad and any(b[0] is None for b in bad):
            table, bad = parse(False, names)
        return names, table, bad

    sanitized = False
    try:
        try:
            with _unraisable_silenced() as handler_failed:
                names, table, bad = parse_all(data)
        except pa.ArrowInvalid:
            if not handler_failed:
                raise
            # pyarrow could not hand a malformed row with non-UTF-8 bytes to the handler (it decodes the row
            # text first), and gave up on the whole file. Parse a copy whose bad bytes are U+FFFD: delimiters,
            # quotes and newlines are ASCII, so rows and fields are the same; the bad bytes are put back below,
            # so those values are still reported as encoding_invalid.
            data = data.decode("utf-8", errors="replace").encode("utf-8")
            sanitized = True
            names, table, bad = parse_all(data)
    except pa.ArrowInvalid as exc:
        raise FileProblem("unreadable_file", f"not a readable CSV/TSV file: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise FileProblem(
            "unreadable_file", "the header row is not valid UTF-8; save the table as UTF-8 (in Excel: 'CSV UTF-8')"
        ) from exc
    if sanitized:
        table = pa.table(
            [pc.replace_substring(c, "\ufffd".encode(), b"\xff") for c in table.columns], names=table.column_names
        )
    table, unclosed = _unclosed_quote(data, table, bad)

    row_numbers = None
    malformed: list[tuple[int, str]] = []
    if unclosed is not None:
        bad.append(unclosed)
    if bad:
        last = max(b[0] for b in bad)
        for number, text, expected, actual in bad:
            preview = text if len(text) <= 80 else text[:77] + "..."
            if (
                number == last
                and "\n" in text
                and '"' in text
                and data.rstrip(b"\r\n").endswith(text.rstrip("\r\n").encode("utf-8", errors="replace"))
            ):
                message = (
                    f"a quote opened in this row is never closed, so the rest of the file ({text.count(chr(10))} "
                    f"more line(s)) was read into it ({preview!r}); close the quote, or write a quote inside a "
                    'quoted value as two quotes ("")'
                )
            else:
                message = (
                    f"the row has {actual} fields where the header has {expected} ({preview!r}); "
                    f"quote fields that contain the delimiter {delimiter!r} or newlines"
                )
            malformed.append((number - 1, message))  # the parser counts the header as row 1
        skipped = [row for row, _ in malformed]
        total = table.num_rows + len(bad)
        keep = np.ones(total, dtype=bool)
        keep[np.array(skipped, dtype=np.int64) - 1] = False
        row_numbers = np.arange(1, total + 1, dtype=np.int64)[keep]
    return [(name, table.column(i)) for i, name in enumerate(names)], table.num_rows, row_numbers, malformed


@contextlib.contextmanager
def _unraisable_silenced() -> Iterator[list[BaseException]]:
    """Collect (instead of printing a traceback for) errors pyarrow swallows inside the row handler."""
    caught: list[BaseException] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: caught.append(info.exc_value)
    try:
        yield caught
    finally:
        sys.unraisablehook = previous


def _unclosed_quote(
    data: bytes, table: pa.Table, bad: list[tuple[int | None, str, int, int]]
) -> tuple[pa.Table, tuple[int, str, int, int] | None]:
    """pyarrow reads a quote that is never closed to the end of the file, silently: the last row then
    holds every later line in one value, and the rows in there vanish. Such a value is the whole rest of
    the file after its opening quote (quotes doubled), which a properly closed value never is. The row
    is taken out and returned as a malformed one, so the loss is reported, not hidden."""
    if table.num_rows == 0:
        return table, None
    last = table.slice(table.num_rows - 1)
    for column in last.columns:
        value = column[0].as_py()
        if isinstance(value, bytes) and b"\n" in value and data.endswith(b'"' + value.replace(b'"', b'""')):
            number = table.num_rows + len(bad) + 1  # parser numbering: the header is row 1
            text = '"' + value.replace(b'"', b'""').decode("utf-8", errors="replace")
            return table.slice(0, table.num_rows - 1), (number, text, table.num_columns, table.num_columns)
    return table, None


def _parse_parquet(data: bytes) -> tuple[list[tuple[str, pa.ChunkedArray]], int, None, list]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for damaged files
        hint = "re-export it"
        if not data.startswith(b"PAR1"):
            hint = "it does not start like Parquet; if it is a CSV or TSV table, name it .csv or .tsv"
        elif not data.endswith(b"PAR1"):
            hint = "it ends early (truncated: an interrupted copy or upload?); copy or export it again"
        raise FileProblem(
            "unreadable_file", f"not a readable Parquet file ({type(exc).__name__}: {exc}); {hint}"
        ) from exc
    columns = [
        (name, table.column(i)) for i, name in enumerate(table.schema.names) if not _PANDAS_INDEX.match(name)
    ]  # a pandas index saved along (df.to_parquet) is not part of the table
    return columns, table.num_rows, None, []


# ---------------------------------------------------------------------------------------------------------------
# Mapping columns


def canonical_column_name(name: str) -> str:
    """``' Aspect Ratio '`` -> ``aspect_ratio``: BOM and outer whitespace dropped, case folded, inner runs of
    spaces or hyphens made underscores."""
    return re.sub(r"[\s\-]+", "_", name.replace("\ufeff", "").strip()).lower()


def _stage(columns: list[tuple[str, pa.ChunkedArray]], n: int, row_numbers: np.ndarray | None) -> pa.Table:
    known: dict[str, tuple[str, pa.ChunkedArray]] = {}
    extras: list[tuple[str, pa.ChunkedArray]] = []
    for position, (name, col) in enumerate(columns):
        key = canonical_column_name(name)
        if key in KNOWN_COLUMNS:
            if key in known:
                raise FileProblem(
                    "column_duplicate",
                    f"columns {known[key][0]!r} and {name!r} both mean {key!r}; keep one of them",
                    column=key,
                )
            known[key] = (name, col)
        elif key:
            extras.append((name.replace("\ufeff", "").strip(), col))
        elif not _all_blank(col):  # a nameless column with values (a trailing delimiter has none)
            extras.append((f"column_{position + 1}", col))
    if "prompt" not in known:
        shown = ", ".join(repr(name) for name, _ in columns[:12]) or "none"
        raise FileProblem(
            "prompt_column_missing",
            f"no 'prompt' column (columns: {shown}); the first row must be a header naming a 'prompt' column"
            + _header_hint([name for name, _ in columns]),
            column="prompt",
        )
    invalid: dict[int, tuple[str, str]] = {}  # row index -> (column, preview) of the first non-UTF-8 value
    arrays: dict[str, pa.ChunkedArray] = {}
    for key in TEXT_COLUMNS:
        if key not in known:
            arrays[key] = pa.chunked_array([pa.nulls(n, pa.string())])
            continue
        name, col = known[key]
        arrays[key] = _as_text(col, name, key, invalid)
    arrays["reference_images"] = (
        _as_reference_lists(*known["reference_images"], invalid)
        if "reference_images" in known
        else pa.chunked_array([pa.nulls(n, pa.list_(pa.string()))])
    )
    extra_text = [(name, _as_text(col, name, None, invalid)) for name, col in extras]
    arrays["extra"] = _json_objects(extra_text, n)
    arrays["row_number"] = pa.chunked_array(
        [pa.array(row_numbers if row_numbers is not None else np.arange(1, n + 1, dtype=np.int64))]
    )
    if invalid:
        codes: list[str | None] = [None] * n
        cols: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        for i, (column, preview) in invalid.items():
            codes[i], cols[i], details[i] = "encoding_invalid", column, preview
        arrays["pre_code"] = pa.chunked_array([pa.array(codes, pa.string())])
        arrays["pre_column"] = pa.chunked_array([pa.array(cols, pa.string())])
        arrays["pre_detail"] = pa.chunked_array([pa.array(details, pa.string())])
    else:
        for key in ("pre_code", "pre_column", "pre_detail"):
            arrays[key] = pa.chunked_array([pa.nulls(n, pa.string())])
    return pa.table([arrays[f.name] for f in STAGED_SCHEMA], schema=STAGED_SCHEMA)


def _header_hint(names: list[str]) -> str:
    """Why a header has no 'prompt' column, when the reason is visible: another delimiter, Excel's
    ``sep=`` line above the header."""
    if names and canonical_column_name(names[0]).startswith("sep="):
        return "; the first line is Excel's 'sep=' line: delete it so the header comes first"
    for name in names:
        for sep, label in ((";", "';'"), ("\t", "tabs"), (",", "','"), ("|", "'|'")):
            if sep in name and "prompt" in (canonical_column_name(part) for part in name.split(sep)):
                return (
                    f"; the header looks separated by {label}: .csv files must use ',' and .tsv files tabs, so "
                    "re-export the table with that delimiter or give the file the matching extension"
                )
    return ""


def _all_blank(col: pa.ChunkedArray) -> bool:
    if pa.types.is_binary(col.type) or pa.types.is_string(col.type):
        lengths = pc.binary_length(col)
        return (pc.max(lengths).as_py() or 0) == 0
    return col.null_count == len(col)


def _as_text(col: pa.ChunkedArray, name: str, key: str | None, invalid: dict[int, tuple[str, str]]) -> pa.ChunkedArray:
    """The column as UTF-8 strings. Bytes that are not UTF-8 become null and mark their row in ``invalid``.

    Numbers, booleans, decimals and dates (Parquet) are cast to their text; nested values are written as
    JSON for extra columns and refused for known ones (``prompt_not_text`` / ``column_not_text``).
    """
    t = col.type
    if pa.types.is_dictionary(t):
        col = pc.cast(col, t.value_type)
        t = t.value_type
    if pa.types.is_string(t):
        return col
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pc.cast(col, pa.string())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        col = pc.cast(col, pa.binary()) if not pa.types.is_binary(t) else col
        return _decode_utf8(col, key or name, invalid)
    if pa.types.is_null(t):
        return pa.chunked_array([pa.nulls(len(col), pa.string())])
    if (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or pa.types.is_boolean(t)
        or pa.types.is_temporal(t)
    ):
        try:
            return pc.cast(col, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    if key is None:  # an extra column of a nested or exotic type: keep each value, as JSON text
        values = [None if v is None else json.dumps(v, default=str, ensure_ascii=False) for v in col.to_pylist()]
        return pa.chunked_array([pa.array(values, pa.string())])
    code = "prompt_not_text" if key == "prompt" else "column_not_text"
    raise FileProblem(
        code,
        f"column {name!r} holds {t} values, which cannot be read as text; store it as a string column",
        column=key,
    )


def _decode_utf8(col: pa.ChunkedArray, name: str, invalid: dict[int, tuple[str, str]]) -> pa.ChunkedArray:
    """Binary -> string, vectorized: one validating cast per chunk; only a failing chunk is bisected
    (a validating cast per half), so k bad values cost about k·log(n) casts, never a Python loop per row."""
    chunks = []
    offset = 0
    for chunk in col.chunks:
        try:
            chunks.append(chunk.cast(pa.string()))
        except pa.ArrowInvalid:
            bad = _invalid_utf8_positions(chunk)
            mask = np.zeros(len(chunk), dtype=bool)
            mask[bad] = True
            raw = chunk.take(pa.array(bad, pa.int64())).to_pylist()
            for i, value in zip(bad, raw, strict=True):
                preview = value.decode("utf-8", errors="replace")
                preview = preview if len(preview) <= 60 else preview[:57] + "..."
                invalid.setdefault(offset + i, (name, preview))
            nulled = pc.if_else(pa.array(mask), pa.scalar(None, pa.binary()), chunk)
            chunks.append(pc.cast(nulled, pa.string(), safe=False))
        offset += len(chunk)
    return pa.chunked_array(chunks, type=pa.string())


def _invalid_utf8_positions(arr: pa.Array, start: int = 0) -> list[int]:
    try:
        arr.cast(pa.string())
        return []
    except pa.ArrowInvalid:
        pass
    if len(arr) <= 16:
        out = []
        for i, value in enumerate(arr.to_pylist()):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                out.append(start + i)
        return out
    mid = len(arr) // 2
    return _invalid_utf8_positions(arr.slice(0, mid), start) + _invalid_utf8_positions(arr.slice(mid), start + mid)


def _as_reference_lists(name: str, col: pa.ChunkedArray, invalid: dict[int, tuple[str, str]]) -> pa.ChunkedArray:
    """``a.png | https://x/b.png`` (text) or a list column -> list<string> of raw entries (null: none)."""
    t = col.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_list_view(t):
        try:
            return pc.cast(col, pa.list_(pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise FileProblem(
                "column_not_text",
                f"column {name!r} is a list of {t.value_type}; make it a list of strings (paths or URLs)",
                column="reference_images",
            ) from exc
    text = _as_text(col, name, "reference_images", invalid)
    trimmed = pc.utf8_trim_whitespace(text)
    blank = pc.fill_null(pc.equal(trimmed, ""), True)
    trimmed = pc.if_else(blank, pa.scalar(None, pa.string()), trimmed)
    return pc.split_pattern(trimmed, "|")


def _json_string_values(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each value as a JSON string literal (``"..."``), null as ``null``; identical to ``json.dumps``."""
    s = pc.replace_substring(col, "\\", "\\\\")
    s = pc.replace_substring(s, '"', '\\"')
    s = pc.replace_substring(s, "\n", "\\n")
    s = pc.replace_substring(s, "\r", "\\r")
    s = pc.replace_substring(s, "\t", "\\t")
    quoted = pc.binary_join_element_wise('"', s, '"', "")
    rare = pc.fill_null(pc.match_substring_regex(col, r"[\x00-\x08\x0b\x0c\x0e-\x1f]"), False)
    if pc.any(rare).as_py():  # other control characters: let json do it, for those rows only
        positions = pc.indices_nonzero(rare).to_numpy()
        values = quoted.to_pylist()
        originals = col.take(pa.array(positions)).to_pylist()
        for i, original in zip(positions, originals, strict=True):
            values[i] = json.dumps(original, ensure_ascii=False)
        quoted = pa.chunked_array([pa.array(values, pa.string())])
    return pc.fill_null(quoted, "null")


def _json_objects(columns: list[tuple[str, pa.ChunkedArray]], n: int) -> pa.ChunkedArray:
    if not columns:
        return pa.chunked_array([pa.repeat("{}", n)]) if n else pa.chunked_array([], type=pa.string())
    parts: list[Any] = []
    seen: dict[str, int] = {}
    for i, (name, col) in enumerate(columns):
        seen[name] = seen.get(name, 0) + 1
        key = name if seen[name] == 1 else f"{name}_{seen[name]}"
        parts.append(("{" if i == 0 else ",") + json.dumps(key, ensure_ascii=False) + ":")
        parts.append(_json_string_values(col))
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")
