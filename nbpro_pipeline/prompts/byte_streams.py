"""The bytes of one table file as a stream: hashed as they are read, gunzipped, optionally made valid UTF-8.

Reading a table never holds the whole file in memory: the CSV parser pulls blocks from these streams,
and the file's sha256 (of the bytes as stored) is computed on the way instead of from a copy.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import io
import threading
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from nbpro_pipeline.prompts.problems import FileProblem

_CHUNK = 1 << 20


class HashingReader(io.RawIOBase):
    """Passes reads through, hashing every byte; ``drain`` reads what the consumer left, so ``hexdigest``
    is always of the whole file. Storage errors become the file's ``unreadable_file`` problem."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._raw.read(size)
        except Exception as exc:  # a dropped connection mid-file is this file's problem only
            raise FileProblem("unreadable_file", f"cannot read the file: {type(exc).__name__}: {exc}") from exc
        self._sha.update(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


class TailKeeper(io.RawIOBase):
    """Passes reads through and keeps the last ``keep`` bytes read (what the end of the table looks like,
    for the unclosed-quote checks) without holding the rest."""

    def __init__(self, raw: BinaryIO, keep: int = _CHUNK) -> None:
        self._raw = raw
        self._keep = keep
        self.tail = b""
        self.total = 0  # bytes read in all

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self.total += len(data)
            self.tail = data[-self._keep :] if len(data) >= self._keep else (self.tail + data)[-self._keep :]
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class Throttle(io.RawIOBase):
    """Keeps a background reader at most ``window`` bytes ahead of what the consumer took.

    pyarrow's streaming CSV reader reads the input on an I/O thread as fast as it can: left alone it holds
    most of a big file in memory before the first batch is validated. Reads from that thread wait until
    the consumer calls ``took(n)``; a wait never lasts more than ``max_wait`` seconds (a parser that needs
    more than the window for one batch is slowed, never stuck), and reads on the consumer's own thread
    never wait."""

    def __init__(self, raw: BinaryIO, window: int, max_wait: float = 0.5) -> None:
        self._raw = raw
        self._window = window
        self._max_wait = max_wait
        self._read = 0
        self._taken = 0
        self._owner = threading.get_ident()
        self._changed = threading.Condition()
        self._closed_flag = False

    def readable(self) -> bool:
        return True

    def took(self, nbytes: int) -> None:
        with self._changed:
            self._taken += nbytes
            self._changed.notify_all()

    def release(self) -> None:
        with self._changed:
            self._closed_flag = True
            self._changed.notify_all()

    def read(self, size: int = -1) -> bytes:
        if threading.get_ident() != self._owner:
            with self._changed:
                self._changed.wait_for(
                    lambda: self._closed_flag or self._read - self._taken < self._window, timeout=self._max_wait
                )
        data = self._raw.read(size)
        self._read += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Gunzip(io.RawIOBase):
    """``gzip.GzipFile`` whose format errors say what to do (truncated or not gzip at all)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._gz.read(size)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileProblem(
                "unreadable_file", f"not a valid gzip file ({exc}); re-compress it or drop the .gz suffix"
            ) from exc

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class Utf8Sanitizer(io.RawIOBase):
    """The stream with every byte sequence that is not UTF-8 replaced by U+FFFD (decoded incrementally,
    so the result is the same as decoding the whole file with ``errors="replace"``)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = _CHUNK if size is None or size < 0 else size
        while len(self._pending) < want and not self._done:
            chunk = self._raw.read(max(want, 1 << 16))
            self._done = not chunk
            self._pending += self._decoder.decode(chunk, final=self._done).encode("utf-8")
        out, self._pending = self._pending[:want], self._pending[want:]
        return out

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_raw(ref: Any) -> BinaryIO:
    """``ref`` (a ``SourceRef``) opened for reading, with the reasons a file cannot be opened spelled out."""
    if ref.error is not None:
        raise FileProblem("unreadable_file", ref.error)
    try:
        return ref.fs.open(ref.path, "rb")
    except FileNotFoundError as exc:
        raise FileProblem("unreadable_file", "the file does not exist; check the path or the pattern") from exc
    except IsADirectoryError as exc:
        raise FileProblem("unreadable_file", "this is a directory; pass it as a directory or a glob") from exc
    except PermissionError as exc:
        raise FileProblem("unreadable_file", f"permission denied ({exc}); make the file readable") from exc
    except Exception as exc:  # any storage error is reported against this file only
        raise FileProblem("unreadable_file", f"cannot read the file: {type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def open_table_bytes(ref: Any, *, sanitize: bool = False) -> Iterator[tuple[BinaryIO, HashingReader]]:
    """The file's table bytes (gunzipped for ``.gz``; made UTF-8 if ``sanitize``) and the hashing reader
    beneath them, whose digest is the stored file's once the stream was read to its end and drained."""
    raw = open_raw(ref)
    try:
        hashing = HashingReader(raw)
        stream: BinaryIO = _Gunzip(hashing) if ref.path.lower().endswith(".gz") else hashing  # type: ignore[assignment]
        yield (Utf8Sanitizer(stream) if sanitize else stream), hashing  # type: ignore[misc]
    finally:
        with contextlib.suppress(Exception):
            raw.close()


def read_head(ref: Any, size: int = 4096) -> tuple[bytes, bool]:
    """The first ``size`` bytes of the table (gunzipped) and whether the whole table is blank (empty or
    only whitespace; read on only while it stays blank)."""
    with open_table_bytes(ref) as (stream, _):
        head = stream.read(size)
        blank = not head or head.isspace()
        while blank:
            more = stream.read(_CHUNK)
            if not more:
                break
            blank = more.isspace()
    return head, blank


def read_tail(ref: Any, size: int, *, sanitize: bool = False) -> bytes:
    """The last ``size`` bytes of the table (gunzipped), read by streaming it once more (a rare path:
    only to confirm an unclosed quote longer than the tail kept while parsing)."""
    tail = b""
    with open_table_bytes(ref, sanitize=sanitize) as (stream, _):
        while chunk := stream.read(_CHUNK):
            tail = (tail + chunk)[-size:]
    return tail


def table_size(ref: Any, *, sanitize: bool = False) -> int:
    """Length of the table bytes (gunzipped), by streaming them."""
    total = 0
    with open_table_bytes(ref, sanitize=sanitize) as (stream, _):
        while chunk := stream.read(_CHUNK):
            total += len(chunk)
    return total
