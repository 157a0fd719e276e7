"""Finding prompt table files, and reading each as a stream of staged batches.

Reading never validates values (that is ``validate``'s job) except for what only the reader can see:
bytes that are not UTF-8 (``encoding_invalid``) and CSV rows with the wrong number of fields
(``row_malformed``). Everything is columnar and streamed: pyarrow parses the file a block at a time
(``readers``), pyarrow.compute maps each block to ``STAGED_SCHEMA`` (``staging``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from nbpro_pipeline.prompts.problems import FileProblem
from nbpro_pipeline.prompts.readers import CsvMode, CsvReader, ParquetReader
from nbpro_pipeline.prompts.result import PromptTableError
from nbpro_pipeline.prompts.staging import column_layout, has_values, nameless_positions, stage
from nbpro_pipeline.references_policy import is_object_uri

__all__ = ["FORMATS", "FileProblem", "SourceRef", "StagedStream", "detect_format", "resolve_sources"]

FORMATS: dict[str, str] = {
    ".csv.gz": "csv.gz",
    ".tsv.gz": "tsv.gz",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")
_GLOB_CHARS = re.compile(r"[*?\[]")


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


@dataclass
class StagedStream:
    """One file, read batch by batch into ``STAGED_SCHEMA`` tables. ``sha256``, ``malformed`` and
    ``rows_read`` are known once the iteration ended. Iterating raises ``FileProblem`` when the file as a
    whole cannot be used (possibly after some batches: what was taken from it must then be dropped), and
    ``ReadAgain`` when it must be read again from its start with ``StagedStream(ref, fmt, error.mode)``."""

    ref: SourceRef
    format: str
    mode: CsvMode = field(default_factory=CsvMode)
    sha256: str | None = None
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (row_number, what is wrong)
    rows_read: int = 0

    def __iter__(self) -> Iterator[pa.Table]:
        reader = self._reader()
        names = reader.open()
        nameless = nameless_positions(names)
        with_values = _nameless_with_values(reader, nameless) if nameless else set()
        layout = None
        rows = 0
        for batch in reader.batches():
            if batch.num_rows == 0:
                continue
            layout = layout or column_layout(names, with_values)
            rows += batch.num_rows
            yield stage(batch.columns, batch.row_numbers, layout)
        if rows == 0 and not reader.malformed:
            raise FileProblem(
                "table_empty",
                "the file has a header but no data rows; add prompts under the header, or remove the file from the "
                "sources"
                if self.format != "parquet"
                else "the file has no rows; write the prompts into it, or remove it from the sources",
            )
        column_layout(names, with_values)  # a header that cannot be used fails the file even without good rows
        self.sha256, self.malformed = reader.sha256, reader.malformed
        self.rows_read = rows + len(self.malformed)

    def _reader(self) -> CsvReader | ParquetReader:
        if self.ref.error is not None:
            raise FileProblem("unreadable_file", self.ref.error)
        if self.format == "parquet":
            return ParquetReader(self.ref)
        return CsvReader(self.ref, "\t" if self.format.startswith("tsv") else ",", self.mode)


def open_source(ref: SourceRef, mode: CsvMode | None = None) -> StagedStream:
    """The file as a ``StagedStream`` (CSV parsed in ``mode``, after a ``ReadAgain``); raises
    ``FileProblem`` at once for an extension no reader knows."""
    if ref.error is not None:
        raise FileProblem("unreadable_file", ref.error)
    fmt = ref.format
    if fmt is None:
        raise FileProblem(
            "format_unknown",
            f"unknown file type; name prompt tables {', '.join(FORMATS)} (the extension picks the reader)",
        )
    return StagedStream(ref, fmt, mode or CsvMode())


def _nameless_with_values(reader: CsvReader | ParquetReader, positions: list[int]) -> set[int]:
    """Which nameless columns hold a value in some row: one extra pass over the file (only for headers
    with an unnamed column, e.g. a trailing delimiter)."""
    found: set[int] = set()
    for batch in reader.batches():
        found.update(p for p in positions if p not in found and has_values(batch.columns[p]))
    return found
