"""Loading prompt tables: each file streamed through validation a batch at a time, the accepted rows
spilled to a local temporary Arrow file, duplicates decided over the whole load, then the accepted rows
handed to a sink once (``load_prompt_tables``: an in-memory table; ``write_prompt_tables``: a Parquet
file in storage, written batch by batch, so the load holds one batch and 16 bytes per accepted row).

A file is taken whole or not at all: its batches and entries are kept apart until it was read to its
end, so a file that fails half-way (or must be read again, see ``readers.ReadAgain``) leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.models.prompt import ACCEPTED_SCHEMA, REJECTED_SCHEMA, count_eligible
from nbpro_pipeline.prompts.duplicates import DuplicateVerdict, Member, repeated_positions, verdicts
from nbpro_pipeline.prompts.problems import FileProblem
from nbpro_pipeline.prompts.readers import CsvMode, ReadAgain
from nbpro_pipeline.prompts.references import ReferenceChecker
from nbpro_pipeline.prompts.result import (
    PromptTableError,
    PromptTableResult,
    PromptTableSummary,
    SourceFile,
    WrittenPromptTables,
)
from nbpro_pipeline.prompts.sources import SourceRef, open_source, resolve_sources
from nbpro_pipeline.prompts.validate import SPILL_SCHEMA, FileContext, validate

_SPILL_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4" if pa.Codec.is_available("lz4") else None)
_ID_COLUMNS = ["prompt_id", "row_number"]  # also spilled on their own: the duplicate rules read only them
_IDS_SCHEMA = pa.schema([SPILL_SCHEMA.field(name) for name in _ID_COLUMNS])


class AcceptedSink(Protocol):
    """Where the accepted rows go, in load order, one ``ACCEPTED_SCHEMA`` batch at a time."""

    def write(self, batch: pa.RecordBatch) -> None: ...


class TableSink:
    """Collects the accepted rows into one in-memory table."""

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []

    def write(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.batches, schema=ACCEPTED_SCHEMA)


class ParquetSink:
    """Writes the accepted rows to a Parquet file (zstd, one row group per batch) as they come."""

    def __init__(self, fh: Any) -> None:
        import pyarrow.parquet as pq

        self._writer = pq.ParquetWriter(fh, ACCEPTED_SCHEMA, compression="zstd")

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


def load_prompt_tables(
    sources: Sequence[str],
    *,
    reference_roots: Sequence[str] | None = None,
    storage_options: dict | None = None,
) -> PromptTableResult:
    """Read prompt tables and split their rows into accepted (``ACCEPTED_SCHEMA``) and rejected
    (``REJECTED_SCHEMA``, one reason per row and provider).

    ``sources``: local paths, globs, directories (their table files, top level, sorted) or fsspec URIs
    (``s3://...``, ``memory://...``; ``storage_options`` go to fsspec). Formats by extension: ``.csv``,
    ``.tsv``, ``.csv.gz``, ``.tsv.gz``, ``.parquet``/``.pq``. ``reference_roots``: if given, local
    reference images must lie under one of these directories.

    A file that cannot be read becomes one file-level rejected row (``row_number`` null) and the others
    are still read. Raises ``PromptTableError`` if no source was given, a glob or directory holds no
    table, or no file could be read at all. The accepted rows are returned in memory; to write them to
    storage without holding them, use ``write_prompt_tables``.
    """
    sink = TableSink()
    summary = ingest(sources, sink, reference_roots=reference_roots, storage_options=storage_options)
    return PromptTableResult(**dict(summary), accepted=sink.table())


class _Discard:
    def write(self, batch: pa.RecordBatch) -> None:
        del batch


def check_prompt_tables(
    sources: Sequence[str],
    *,
    reference_roots: Sequence[str] | None = None,
    storage_options: dict | None = None,
) -> PromptTableSummary:
    """``load_prompt_tables`` without keeping the accepted rows (``nbpro validate``): counts, rejections
    and per-file summaries only, in the memory of one batch."""
    return ingest(sources, _Discard(), reference_roots=reference_roots, storage_options=storage_options)


def write_prompt_tables(
    sources: Sequence[str],
    storage: Any,
    *,
    name: str = "prompt_table",
    reference_roots: Sequence[str] | None = None,
    storage_options: dict | None = None,
) -> WrittenPromptTables:
    """``load_prompt_tables``, with the accepted rows streamed to ``<name>/accepted`` and the rejected
    ones written to ``<name>/rejected`` (Parquet tables of ``storage``; each appears complete or not at
    all). The accepted rows are never all in memory."""
    from nbpro_pipeline.storage import table_path, write_table

    accepted_path = table_path(storage, f"{name}/accepted")
    with storage.open_atomic(accepted_path) as fh:
        sink = ParquetSink(fh)
        try:
            summary = ingest(sources, sink, reference_roots=reference_roots, storage_options=storage_options)
        finally:
            sink.close()  # on failure too (the half-written file is then discarded, not committed)
    rejected_uri = write_table(storage, f"{name}/rejected", summary.rejected)
    return WrittenPromptTables(**dict(summary), accepted_uri=storage.uri(accepted_path), rejected_uri=rejected_uri)


def ingest(
    sources: Sequence[str],
    sink: AcceptedSink,
    *,
    reference_roots: Sequence[str] | None = None,
    storage_options: dict | None = None,
) -> PromptTableSummary:
    """The load itself: every file read and validated, duplicates decided, accepted rows to ``sink``."""
    if isinstance(sources, str):
        sources = [sources]
    refs = resolve_sources(list(sources), storage_options)
    checker = ReferenceChecker(reference_roots)
    with _returning_pool(), tempfile.TemporaryDirectory(prefix="nbpro-ingest-") as spill_dir:
        files = [_read_file(ref, checker, os.path.join(spill_dir, f"{k}.arrow")) for k, ref in enumerate(refs)]
        read = [f for f in files if f.error is None]
        if not read:
            details = "; ".join(f"{f.ref.uri}: {f.error.message}" for f in files if f.error is not None)
            raise PromptTableError(f"no prompt table could be read: {details}")
        for k, f in enumerate(read):
            f.base = read[k - 1].base + read[k - 1].candidates if k else 0
        duplicates = _decide_duplicates(read)
        eligible: dict[str, int] = {}
        for f in read:
            f.accepted = _emit(f, duplicates, sink, eligible)
    rejected = pa.concat_tables([_file_rejections(f, duplicates) for f in files])
    summaries = [_summary(f, rejected) for f in files]
    return PromptTableSummary(
        rejected=rejected,
        sources=summaries,
        rows_read=sum(f.rows_read for f in read),
        accepted_rows=sum(f.accepted for f in read),
        eligible=eligible,
    )


@contextlib.contextmanager
def _returning_pool() -> Iterator[None]:
    """Arrow allocates on jemalloc with immediate decay while a load runs, if this pyarrow has it.

    A load allocates and frees one batch's worth of Arrow memory thousands of times, from several
    threads; mimalloc and the system allocator keep those pages, jemalloc told to return them at once
    keeps RSS near what is in use (``bench/ingest.py``). The previous pool is restored after; buffers
    remember their pool, so tables returned to the caller stay valid."""
    previous = pa.default_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except (NotImplementedError, pa.ArrowNotImplementedError):  # a pyarrow built without jemalloc
        pool = previous
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


@dataclass
class _File:
    """One source file after reading: its spilled accepted rows and their keys, its entries, or its error."""

    ref: SourceRef
    format: str | None = None
    sha256: str | None = None
    rows_read: int = 0
    spill: str | None = None
    candidates: int = 0  # accepted rows before the duplicate rules
    id_key: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    content_key: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    id_given: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    entries: list[pa.Table] = field(default_factory=list)  # REJECTED_SCHEMA, row order within each
    error: FileProblem | None = None
    base: int = 0  # load position of its first accepted row (positions run over all files)
    accepted: int = 0  # after the duplicate rules


def _read_file(ref: SourceRef, checker: ReferenceChecker, spill: str) -> _File:
    """Stream one file through validation into ``spill``; any failure leaves only the file's error."""
    mode = CsvMode()
    while True:
        try:
            return _read_attempt(ref, checker, spill, mode)
        except ReadAgain as again:
            mode = again.mode
        except Exception as exc:  # one bad file never stops the others
            problem = exc if isinstance(exc, FileProblem) else FileProblem("unreadable_file", _unexpected(exc))
            return _File(ref, format=ref.format, error=problem)


def _read_attempt(ref: SourceRef, checker: ReferenceChecker, spill: str, mode: CsvMode) -> _File:
    stream = open_source(ref, mode)
    out = _File(ref, format=stream.format, spill=spill)
    keys = []
    context = FileContext(ref.uri, None, ref.base_dir)
    with (
        pa.OSFile(spill, "wb") as sink,
        pa.ipc.new_file(sink, SPILL_SCHEMA, options=_SPILL_OPTIONS) as writer,
        pa.OSFile(spill + ".ids", "wb") as ids_sink,
        pa.ipc.new_file(ids_sink, _IDS_SCHEMA, options=_SPILL_OPTIONS) as ids_writer,
    ):
        for staged in stream:
            result = validate(staged, context, checker)
            del staged
            if result.accepted.num_rows:
                writer.write_table(result.accepted)
                ids_writer.write_table(result.accepted.select(_ID_COLUMNS))
            keys.append(result.keys)
            if result.entries:
                out.entries.append(_entries_table(result.entries))
    if stream.malformed:
        out.entries.insert(0, _malformed_table(ref.uri, stream.malformed))
    out.sha256, out.rows_read = stream.sha256, stream.rows_read
    out.id_key = np.concatenate([k.id_key for k in keys]) if keys else out.id_key
    out.content_key = np.concatenate([k.content_key for k in keys]) if keys else out.content_key
    out.id_given = np.concatenate([k.id_given for k in keys]) if keys else out.id_given
    out.candidates = len(out.id_key)
    return out


def _spilled(f: _File, ids_only: bool = False) -> Iterator[pa.RecordBatch]:
    with pa.OSFile(f.spill + (".ids" if ids_only else ""), "rb") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


_Duplicates = dict[int, tuple[Member, DuplicateVerdict]]  # by load position


def _decide_duplicates(files: list[_File]) -> _Duplicates:
    """Verdicts by load position; only the rows whose id keys repeat are read back (id and row number)."""
    positions = repeated_positions(files[0].id_key if len(files) == 1 else np.concatenate([f.id_key for f in files]))
    if not len(positions):
        return {}
    members: list[Member] = []
    for f in files:
        base = f.base
        mine = positions[(positions >= base) & (positions < base + f.candidates)] - base
        start = 0
        for batch in _spilled(f, ids_only=True) if len(mine) else ():
            local = mine[(mine >= start) & (mine < start + batch.num_rows)]
            if len(local):
                picked = batch.take(pa.array(local - start)).to_pylist()
                members.extend(
                    Member(base + int(k), f.ref.uri, row["row_number"], row["prompt_id"], int(f.content_key[k]))
                    for k, row in zip(local.tolist(), picked, strict=True)
                )
            start += batch.num_rows
    by_position = {m.position: m for m in members}
    return {p: (by_position[p], v) for p, v in verdicts(members).items()}


def _emit(f: _File, duplicates: _Duplicates, sink: AcceptedSink, eligible: dict[str, int]) -> int:
    """The file's accepted rows, less the duplicates, with its source columns, to ``sink``; their count."""
    dropped = np.array(sorted(p - f.base for p in _own(f, duplicates)), dtype=np.int64)
    start = kept = 0
    for batch in _spilled(f):
        n = batch.num_rows
        local = dropped[(dropped >= start) & (dropped < start + n)] - start
        if len(local):
            keep = np.ones(n, dtype=bool)
            keep[local] = False
            batch = batch.filter(pa.array(keep))
        start += n
        if not batch.num_rows:
            continue
        columns = dict(zip(batch.schema.names, batch.columns, strict=True))
        columns["source_uri"] = pa.repeat(pa.scalar(f.ref.uri, pa.string()), batch.num_rows)
        columns["source_sha256"] = pa.repeat(pa.scalar(f.sha256, pa.string()), batch.num_rows)
        sink.write(pa.RecordBatch.from_arrays([columns[x.name] for x in ACCEPTED_SCHEMA], schema=ACCEPTED_SCHEMA))
        eligible.update(count_eligible(batch["eligible_providers"], eligible))
        kept += batch.num_rows
    return kept


def _own(f: _File, duplicates: _Duplicates) -> list[int]:
    return [p for p in duplicates if f.base <= p < f.base + f.candidates]


def _file_rejections(f: _File, duplicates: _Duplicates) -> pa.Table:
    """The file's entries in row order: its file-level entry, or its rows' entries with each duplicate's
    entry in place of what the row had (a duplicate row gets that one entry only)."""
    if f.error is not None:
        return _table([_entry(f.ref.uri, None, None, f.error.column, f.error.code, f.error.message)])
    tables = list(f.entries)
    own = sorted(_own(f, duplicates))
    if own:
        dup = _table(
            [
                _entry(
                    f.ref.uri,
                    duplicates[p][0].row_number,
                    duplicates[p][0].prompt_id,
                    "id" if f.id_given[p - f.base] else None,
                    duplicates[p][1].code,
                    duplicates[p][1].message,
                )
                for p in own
            ]
        )
        rows = dup.column("row_number")
        tables = [t.filter(pc.invert(pc.is_in(t.column("row_number"), value_set=rows))) for t in tables]
        tables.append(dup)
    if not tables:
        return REJECTED_SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    return table.take(pc.sort_indices(table, sort_keys=[("row_number", "ascending")]))  # stable: ties keep order


def _summary(f: _File, rejected: pa.Table) -> SourceFile:
    count = int(pc.sum(pc.equal(rejected.column("source_uri"), f.ref.uri)).as_py() or 0)
    if f.error is not None:
        return SourceFile(uri=f.ref.uri, format=f.format, sha256=None, error=f.error.message, rejections=count)
    return SourceFile(
        uri=f.ref.uri,
        format=f.format,
        sha256=f.sha256,
        rows_read=f.rows_read,
        accepted=f.accepted,
        rejected=f.rows_read - f.accepted,
        rejections=count,
    )


def _entry(uri: str, row: int | None, pid: str | None, column: str | None, code: str, message: str) -> dict:
    return {
        "source_uri": uri,
        "row_number": row,
        "prompt_id": pid,
        "provider": None,
        "column": column,
        "code": code,
        "message": message,
    }


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=REJECTED_SCHEMA)


def _entries_table(entries: list[dict[str, Any]]) -> pa.Table:
    return _table([{k: v for k, v in e.items() if k != "_order"} for e in entries])


def _malformed_table(uri: str, malformed: list[tuple[int, str]]) -> pa.Table:
    return _table([_entry(uri, row, None, None, "row_malformed", message) for row, message in malformed])


def _unexpected(exc: Exception) -> str:
    return f"cannot read the file ({type(exc).__name__}: {exc}); check that it is a well-formed table"
