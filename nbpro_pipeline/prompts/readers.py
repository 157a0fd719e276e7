"""Parsing one table file into raw column batches, streamed: CSV/TSV (gzip or not) and Parquet.

A reader never holds the whole file's rows: the CSV parser pulls blocks from the byte stream (the
file's sha256 is computed on the way), Parquet is decoded one batch at a time from the file's bytes
(compressed, so small). Only what the reader alone can see is reported here: CSV rows with the wrong
number of fields (``malformed``), and whole-file problems (``FileProblem``). A few rare files must be
parsed again from their start in another mode (``ReadAgain``): a quoted value longer than a block, or a
malformed row with bytes that are not UTF-8 (pyarrow cannot hand such a row to the handler).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.prompts.byte_streams import (
    HashingReader,
    TailKeeper,
    Throttle,
    open_raw,
    open_table_bytes,
    read_head,
    read_tail,
    table_size,
)
from nbpro_pipeline.prompts.problems import FileProblem

CSV_BLOCK_BYTES = 1 << 20  # CSV bytes parsed (and validated) at a time; a row longer than this is read again
PARQUET_BATCH_ROWS = 1 << 14  # Parquet rows decoded (and validated) at a time
_PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")
_TAIL_BYTES = 1 << 20
_AHEAD_BLOCKS = 3  # blocks the parser may read ahead of validation


class ReadAgain(Exception):  # noqa: N818 - a signal, not an error
    """Read the file again from its start with ``mode``; everything taken from it so far is discarded."""

    def __init__(self, mode: CsvMode) -> None:
        super().__init__(str(mode))
        self.mode = mode


@dataclass(frozen=True)
class CsvMode:
    block_size: int | None = None  # None: CSV_BLOCK_BYTES
    sanitize: bool = False  # bytes that are not UTF-8 replaced before parsing (and put back after)


@dataclass
class RawBatch:
    columns: list[pa.Array]  # in file order, as parsed
    row_numbers: np.ndarray  # int64, 1-based data rows (the header not counted)

    @property
    def num_rows(self) -> int:
        return len(self.row_numbers)


@dataclass
class _BadRow:
    number: int  # parser numbering: the header is row 1
    text: str
    expected: int
    actual: int


class ParquetReader:
    """A Parquet file: its bytes are read whole (they are compressed) and decoded batch by batch."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref
        self.sha256: str | None = None
        self.malformed: list[tuple[int, str]] = []
        self._data = b""

    def open(self) -> list[str]:
        import pyarrow.parquet as pq

        with contextlib.closing(open_raw(self.ref)) as fh:
            try:
                self._data = fh.read()
            except Exception as exc:
                raise FileProblem("unreadable_file", f"cannot read the file: {type(exc).__name__}: {exc}") from exc
        self.sha256 = hashlib.sha256(self._data).hexdigest()
        try:
            self._file = pq.ParquetFile(io.BytesIO(self._data))
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise self._problem(exc) from exc
        names = self._file.schema_arrow.names
        self._keep = [i for i, name in enumerate(names) if not _PANDAS_INDEX.match(name)]
        return [names[i] for i in self._keep]  # a pandas index saved along (df.to_parquet) is not part of the table

    def batches(self) -> Iterator[RawBatch]:
        start = 1
        try:
            for batch in self._file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                n = batch.num_rows
                yield RawBatch([batch.column(i) for i in self._keep], np.arange(start, start + n, dtype=np.int64))
                start += n
        except FileProblem:
            raise
        except Exception as exc:
            raise self._problem(exc) from exc

    def _problem(self, exc: Exception) -> FileProblem:
        hint = "re-export it"
        if not self._data.startswith(b"PAR1"):
            hint = "it does not start like Parquet; if it is a CSV or TSV table, name it .csv or .tsv"
        elif not self._data.endswith(b"PAR1"):
            hint = "it ends early (truncated: an interrupted copy or upload?); copy or export it again"
        return FileProblem("unreadable_file", f"not a readable Parquet file ({type(exc).__name__}: {exc}); {hint}")


_MAGIC = (
    (b"PAR1", "a Parquet file; name it .parquet"),
    (b"\x1f\x8b", "gzip-compressed; name it .csv.gz or .tsv.gz"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx?); export the sheet as 'CSV UTF-8'"),
    (b"%PDF", "a PDF document; export the table as CSV UTF-8"),
    (b"\x89PNG", "a PNG image, not a table"),
    (b"\xff\xd8\xff", "a JPEG image, not a table"),
)


def _refuse_binary(head: bytes, fmt: str) -> None:
    """A file that is not text at all gets one clear file-level reason instead of a parser error full of
    garbage: known signatures name what the file is; otherwise, more than 10% of the first 4 KB being
    undecodable or control bytes means binary (a Latin-1 table or one NUL in a cell stays far below)."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise FileProblem("unreadable_file", f"this is {what}, not {fmt} text")
    text = head[:4096].decode("utf-8", errors="replace")
    odd = sum(1 for ch in text if ch == "\ufffd" or (ch < " " and ch not in "\t\n\r"))
    if text and odd > len(text) / 10:
        raise FileProblem(
            "unreadable_file",
            f"the file is binary, not {fmt} text ({odd} of its first {len(text)} characters are not text); "
            "export the table as CSV UTF-8, or name a Parquet file .parquet",
        )


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


@dataclass
class CsvReader:
    """A CSV or TSV file, parsed block by block, single-threaded (the only mode in which pyarrow numbers
    the rows it skips). Every column is read as binary (UTF-8 is checked per value later), quoted
    newlines are allowed, a UTF-8 BOM is skipped."""

    ref: Any
    delimiter: str
    mode: CsvMode = field(default_factory=CsvMode)
    sha256: str | None = None
    malformed: list[tuple[int, str]] = field(default_factory=list)  # after ``batches`` ran to its end
    _bad: list[_BadRow] = field(default_factory=list)
    _names: list[str] = field(default_factory=list)

    @property
    def _label(self) -> str:
        return "TSV" if self.delimiter == "\t" else "CSV"

    def open(self) -> list[str]:
        head, blank = read_head(self.ref)
        if blank:
            raise FileProblem("unreadable_file", "the file is empty; it needs a header row with a 'prompt' column")
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise FileProblem("unreadable_file", "the file is UTF-16 text; save it as UTF-8 (in Excel: 'CSV UTF-8')")
        _refuse_binary(head, self._label)
        with open_table_bytes(self.ref, sanitize=self.mode.sanitize) as (stream, _):
            throttle = Throttle(stream, window=2 * (self.mode.block_size or CSV_BLOCK_BYTES))
            try:  # only the first block is wanted: the parser must not read the whole file ahead meanwhile
                self._names = self._guarded(lambda: _names_of(self._open_csv(throttle, typed=False), throttle))
            finally:
                throttle.release()
        return list(self._names)

    def _open_csv(self, stream: Any, typed: bool) -> Any:
        import pyarrow.csv as pcsv

        def on_invalid(row: Any) -> str:
            if typed:
                self._bad.append(_BadRow(row.number, row.text, row.expected_columns, row.actual_columns))
            return "skip"

        convert = pcsv.ConvertOptions(
            column_types={n: pa.binary() for n in self._names} if typed else None,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[],
            check_utf8=False,
        )
        return pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(use_threads=False, block_size=self.mode.block_size or CSV_BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(
                delimiter=self.delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=convert,
        )

    def _guarded(self, step: Any) -> Any:
        """Run one parser step, turning its failures into a file problem or a ``ReadAgain``."""
        with _unraisable_silenced() as handler_failed:
            try:
                return step()
            except pa.ArrowInvalid as exc:
                if "straddl" in str(exc) and not self.mode.block_size:
                    # a quoted value with newlines longer than a block (a huge cell): read the file as one block
                    size = min(table_size(self.ref, sanitize=self.mode.sanitize) + 1, (1 << 31) - 1)
                    raise ReadAgain(dataclasses.replace(self.mode, block_size=size)) from exc
                if handler_failed and not self.mode.sanitize:
                    # pyarrow could not hand a malformed row with non-UTF-8 bytes to the handler (it decodes the
                    # row text first), and gave up on the whole file. Parse a copy whose bad bytes are U+FFFD:
                    # delimiters, quotes and newlines are ASCII, so rows and fields are the same; the bad bytes
                    # are put back, so those values are still reported as encoding_invalid.
                    raise ReadAgain(dataclasses.replace(self.mode, sanitize=True)) from exc
                raise FileProblem("unreadable_file", f"not a readable CSV/TSV file: {exc}") from exc
            except UnicodeDecodeError as exc:
                raise FileProblem(
                    "unreadable_file",
                    "the header row is not valid UTF-8; save the table as UTF-8 (in Excel: 'CSV UTF-8')",
                ) from exc

    def batches(self) -> Iterator[RawBatch]:
        """The rows block by block; the last block is held back until the end of the file is known (an
        unclosed quote swallows the rest of the file into the last row, which is then taken out)."""
        self._bad.clear()
        block = self.mode.block_size or CSV_BLOCK_BYTES
        with open_table_bytes(self.ref, sanitize=self.mode.sanitize) as (stream, hashing):
            tail = TailKeeper(stream, _TAIL_BYTES)
            throttle = Throttle(tail, window=_AHEAD_BLOCKS * block)
            try:
                yield from self._parse(throttle, hashing, tail, block)
            finally:
                throttle.release()
        self.malformed = self._messages(tail)

    def _parse(self, throttle: Throttle, hashing: HashingReader, tail: TailKeeper, block: int) -> Iterator[RawBatch]:
        reader = self._guarded(lambda: self._open_csv(throttle, typed=True))
        with reader:
            try:
                yield from self._numbered_batches(reader, throttle, hashing, tail, block)
            finally:
                throttle.release()  # before the reader's close, which waits for the read-ahead the throttle holds

    def _numbered_batches(
        self, reader: Any, throttle: Throttle, hashing: HashingReader, tail: TailKeeper, block: int
    ) -> Iterator[RawBatch]:
        good, held = 0, None
        while (batch := self._guarded(lambda: _next_batch(reader))) is not None:
            throttle.took(block)
            batch = self._restore_bytes(batch)
            if held is not None:
                yield self._numbered(held, good)
                good += held.num_rows
            held = batch
        throttle.release()
        hashing.drain()
        self.sha256 = hashing.hexdigest()
        if held is not None:
            held = self._without_unclosed(held, good + held.num_rows, tail)
            yield self._numbered(held, good)

    def _restore_bytes(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self.mode.sanitize:
            return batch
        columns = [pc.replace_substring(c, "\ufffd".encode(), b"\xff") for c in batch.columns]
        return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)

    def _numbered(self, batch: pa.RecordBatch, good_before: int) -> RawBatch:
        """Data row numbers of the batch's rows: the parser skipped the malformed rows (parser number - 1
        is their data row), so the k-th good row is the k-th number that no skipped row took."""
        skipped = np.sort(np.array([b.number - 1 for b in self._bad], dtype=np.int64))
        goods_before_skip = skipped - np.arange(len(skipped), dtype=np.int64) - 1
        g = np.arange(good_before, good_before + batch.num_rows, dtype=np.int64)
        rows = g + 1 + np.searchsorted(goods_before_skip, g, side="right")
        return RawBatch(list(batch.columns), rows)

    def _ends_with(self, tail: TailKeeper, suffix: bytes, strip_newlines: bool = False) -> bool:
        """Whether the table bytes (right-stripped of newlines if asked) end with ``suffix``."""
        kept = tail.tail.rstrip(b"\r\n") if strip_newlines else tail.tail
        if len(suffix) <= len(kept) or tail.total <= len(tail.tail):
            return kept.endswith(suffix)
        if not suffix.endswith(kept):
            return False
        whole = read_tail(self.ref, len(suffix) + len(tail.tail) - len(kept), sanitize=self.mode.sanitize)
        return (whole.rstrip(b"\r\n") if strip_newlines else whole).endswith(suffix)

    def _without_unclosed(self, batch: pa.RecordBatch, good: int, tail: TailKeeper) -> pa.RecordBatch:
        """pyarrow reads a quote that is never closed to the end of the file, silently: the last row then
        holds every later line in one value, and the rows in there vanish. Such a value is the whole rest
        of the file after its opening quote (quotes doubled), which a properly closed value never is. The
        row is taken out and reported as a malformed one, so the loss is reported, not hidden."""
        if batch.num_rows == 0:
            return batch
        for column in batch.columns:
            value = column[batch.num_rows - 1].as_py()
            if isinstance(value, bytes) and b"\n" in value and self._ends_with(tail, b'"' + value.replace(b'"', b'""')):
                number = good + len(self._bad) + 1  # parser numbering: the header is row 1
                text = '"' + value.replace(b'"', b'""').decode("utf-8", errors="replace")
                self._bad.append(_BadRow(number, text, batch.num_columns, batch.num_columns))
                return batch.slice(0, batch.num_rows - 1)
        return batch

    def _messages(self, tail: TailKeeper) -> list[tuple[int, str]]:
        if not self._bad:
            return []
        last = max(b.number for b in self._bad)
        out = []
        for b in self._bad:
            preview = b.text if len(b.text) <= 80 else b.text[:77] + "..."
            if (
                b.number == last
                and "\n" in b.text
                and '"' in b.text
                and self._ends_with(tail, b.text.rstrip("\r\n").encode("utf-8", errors="replace"), strip_newlines=True)
            ):
                message = (
                    f"a quote opened in this row is never closed, so the rest of the file ({b.text.count(chr(10))} "
                    f"more line(s)) was read into it ({preview!r}); close the quote, or write a quote inside a "
                    'quoted value as two quotes ("")'
                )
            else:
                message = (
                    f"the row has {b.actual} fields where the header has {b.expected} ({preview!r}); "
                    f"quote fields that contain the delimiter {self.delimiter!r} or newlines"
                )
            out.append((b.number - 1, message))  # the parser counts the header as row 1
        return out


def _names_of(reader: Any, throttle: Throttle) -> list[str]:
    """The header's names (decoding them fails for a header that is not UTF-8). The throttle is released
    before the reader closes: the close waits for the parser's read-ahead, which the throttle holds for
    up to its ``max_wait`` (0.5 s per table opened, when the table is over two blocks)."""
    with reader:
        try:
            return list(reader.schema.names)
        finally:
            throttle.release()


def _next_batch(reader: Any) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None
