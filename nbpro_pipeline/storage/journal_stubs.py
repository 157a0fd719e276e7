"""A cell's journal as compact columns: the few fields of each entry that pruning decides on, and where
its full text is, so that deciding over a year of entries never holds them as objects or lines.

``scan`` reads every kept compacted file and segment once (one at a time) into ``JournalStubs``;
``by_fingerprint`` hands them back a batch of fingerprints at a time as light ``JournalEntry`` stubs
(no row, no request); ``full_entries`` reads again only the entries a pruning keeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.history_index import bucket_ids
from nbpro_pipeline.storage.journal import JournalEntry, JournalFiles, read_segments

_CHUNK = 4096  # entries kept as Python values before they are packed into a record batch
_ROWS = 1024  # stub rows turned into Python values at a time
_SCHEMA = pa.schema(
    [
        ("fingerprint", pa.string()),
        ("kind", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("task_id", pa.string()),
        ("idempotency_key", pa.string()),
        ("source", pa.int32()),  # which file: the compacted files in listing order, then the segments
        ("position", pa.int32()),  # which entry of it (segments: which non-blank line)
    ]
)


@dataclass(frozen=True)
class Where:
    """Where one entry's full text is, and its place in the order the journal was read."""

    seq: int
    source: int
    position: int


@dataclass
class JournalStubs:
    """Every readable entry of a cell's journal, as ``_SCHEMA`` columns in the order read."""

    sources: list[str]  # file names relative to the journal directory, as numbered in ``source``
    batches: list[pa.RecordBatch] = field(default_factory=list)
    bad_lines: int = 0
    _pending: list[tuple] = field(default_factory=list)
    _handed: int = 0  # entries already handed over by ``table``

    @property
    def count(self) -> int:
        return self._handed + sum(b.num_rows for b in self.batches) + len(self._pending)

    def add(self, entry: JournalEntry, source: int, position: int) -> None:
        key = entry.idempotency_key if entry.kind == "intent" else None  # pruning reads only an intent's key
        self._pending.append((entry.fingerprint, entry.kind, entry.at, entry.task_id, key, source, position))
        if len(self._pending) >= _CHUNK:
            self._pack()

    def _pack(self) -> None:
        if self._pending:
            columns = [list(values) for values in zip(*self._pending, strict=True)]
            self.batches.append(pa.record_batch(columns, schema=_SCHEMA))
            self._pending = []

    def table(self, buckets: int = 1) -> pa.Table:
        """The stubs in read order, with that order (``seq``) and, for the fingerprint index's ``buckets``,
        each one's ``bucket`` (``by_fingerprint`` walks them by bucket, so that a batch of fingerprints reads
        few buckets). Handed over once: the stubs then let go of their batches."""
        self._pack()
        table = pa.Table.from_batches(self.batches, schema=_SCHEMA)
        self._handed, self.batches = self._handed + table.num_rows, []
        table = table.append_column("seq", pa.array(range(table.num_rows), pa.int64()))
        return table.append_column("bucket", bucket_ids(table["fingerprint"], buckets))


def scan(storage: Storage, files: JournalFiles) -> JournalStubs:
    """Every entry of the kept compacted files and of the segments no compacted file replaces."""
    stubs = JournalStubs(sources=[*files.compacted, *files.segments])
    for source, compacted in enumerate(files.compacted.values()):
        for position, entry in enumerate(compacted.entries):
            stubs.add(entry, source, position)
    first = len(files.compacted)
    paths = [f"{files.directory}/{name}" for name in files.segments]
    for source, (_path, data) in enumerate(read_segments(storage, paths), start=first):
        for position, line in _lines(data):
            try:
                entry = JournalEntry.model_validate_json(line)
            except ValueError:
                stubs.bad_lines += 1  # read_journal skips it too: nothing a run would use
                continue
            stubs.add(entry, source, position)
    return stubs


def _lines(data: bytes) -> Iterator[tuple[int, str]]:
    lines = (line for line in data.decode("utf-8", "replace").splitlines() if line.strip())
    yield from enumerate(lines)


def by_fingerprint(table: pa.Table, batch: int) -> Iterator[list[tuple[str, list[tuple[JournalEntry, Where]]]]]:
    """Up to ``batch`` fingerprints at a time, by bucket and then fingerprint, each with its stubs in read
    order (``table`` from ``JournalStubs.table``). A stub is a ``JournalEntry`` without row and request, and
    where it lies. The rows are gathered ``_ROWS`` at a time in that order, not as a sorted copy of them all."""
    done: list[tuple[str, list[tuple[JournalEntry, Where]]]] = []
    current: tuple[str, list[tuple[JournalEntry, Where]]] | None = None
    order = pc.sort_indices(table, [("bucket", "ascending"), ("fingerprint", "ascending"), ("seq", "ascending")])
    for lo in range(0, len(order), _ROWS):
        for row in _rows(table.take(order.slice(lo, _ROWS))):
            if current is None or current[0] != row["fingerprint"]:
                if current is not None:
                    done.append(current)
                current = (row["fingerprint"], [])
                if len(done) >= batch:
                    yield done
                    done = []
            current[1].append((_stub(row), Where(row["seq"], row["source"], row["position"])))
    if current is not None:
        done.append(current)
    if done:
        yield done


def _rows(record: pa.Table) -> Iterator[dict]:
    """The rows of ``record`` as dicts, one at a time (``to_pylist`` would make them all at once)."""
    names = record.schema.names
    for values in zip(*(record.column(name).to_pylist() for name in names), strict=True):
        yield dict(zip(names, values, strict=True))


def _stub(row: dict) -> JournalEntry:
    return JournalEntry.model_construct(
        kind=row["kind"],
        fingerprint=row["fingerprint"],
        run_id="",
        at=row["at"],
        task_id=row["task_id"],
        idempotency_key=row["idempotency_key"],
    )


def full_entries(storage: Storage, files: JournalFiles, stubs: JournalStubs, kept: list[Where]) -> list[JournalEntry]:
    """The full entries at ``kept``, in time order (then the order read); only the segments that hold one
    are read again."""
    wanted: dict[int, dict[int, int]] = {}  # source -> position -> seq
    for where in kept:
        wanted.setdefault(where.source, {})[where.position] = where.seq
    found: list[tuple[int, JournalEntry]] = []
    compacted = list(files.compacted.values())
    for source, positions in wanted.items():
        if source < len(compacted):
            found.extend((seq, compacted[source].entries[position]) for position, seq in positions.items())
    segments = sorted(source for source in wanted if source >= len(compacted))
    paths = [f"{files.directory}/{stubs.sources[source]}" for source in segments]
    for source, (_path, data) in zip(segments, read_segments(storage, paths), strict=True):
        positions = wanted[source]
        for position, line in _lines(data):
            if position in positions:
                found.append((positions[position], JournalEntry.model_validate_json(line)))
    return [entry for _seq, entry in sorted(found, key=lambda pair: (pair[1].at, pair[0]))]
