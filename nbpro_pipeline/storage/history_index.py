"""A fingerprint-keyed index of one cell's history, so that what a run reads grows with its own rows.

The ledger stays the source of truth; the index is derived from it and may always be missing or stale.
Layout, under ``index/provider=…/resolution=…/``:

- ``hist-<created>-<rand>.arrows``: the cell's history columns (``HISTORY_COLUMNS``) split into
  ``buckets`` hash buckets by fingerprint (``bucket_of``), each bucket one self-contained Arrow IPC
  stream, the buckets concatenated. Written once, never rewritten.
- ``manifest.json``: which file, where each bucket lies in it (byte offset, length, rows), and the
  *watermark*: the names of the ledger parts whose rows the file holds (``covers``). Written last, in
  one atomic write (a rename locally, one PUT on object stores): a kill before it leaves the old
  manifest, which still describes a complete file.

A reader trusts the index only while every part it covers is still live (``ledger_parts``): a
compaction that merged covered parts away, a kill halfway through one, or a concurrent writer all make a
covered part disappear from the live set, and the reader then falls back to reading the cell (never a
row lost or doubled). The live parts the index does not cover are the *tail*, read in full beside it.
Since live parts never share a row, index rows plus tail rows are the cell's rows exactly once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ValidationError

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import LEDGER_SCHEMA
from nbpro_pipeline.storage.filesystem import Storage, cell_dir
from nbpro_pipeline.storage.ledger import read_parts
from nbpro_pipeline.storage.ledger_parts import LedgerPart, cell_parts

log = logging.getLogger(__name__)

HISTORY_COLUMNS = [
    "fingerprint", "status", "task_id", "error_code", "final_cost", "image_uri", "recorded_at", "task_total"
]  # fmt: skip
INDEX_FORMAT = 2  # 2: task_total added; an index of another format is rebuilt, never read
HISTORY_SCHEMA = LEDGER_SCHEMA.empty_table().select(HISTORY_COLUMNS).schema
MANIFEST = "manifest.json"
# rows per bucket the writer aims at: a run's lookup reads one bucket per fingerprint it asks about
TARGET_BUCKET_ROWS = 1024
MAX_BUCKETS = 1 << 14
# unreferenced index files younger than this are left alone: a run that read the previous manifest may
# still be reading its file
KEEP_UNREFERENCED_S = 3600.0
# LZ4 where a bucket crosses the network (a fifth of the bytes); none on local disk, where a bucket is read
# straight from the memory map (decompressing one costs far more than reading it)
_IPC_REMOTE = pa.ipc.IpcWriteOptions(compression="lz4")
_IPC_LOCAL = pa.ipc.IpcWriteOptions()


class IndexManifest(BaseModel):
    """What ``manifest.json`` says; anything that does not validate is no index at all."""

    format: int = INDEX_FORMAT
    file: str  # name of the bucket file, in the same directory
    buckets: int
    offsets: list[int]
    lengths: list[int]
    rows: list[int]
    covers: list[str]  # ledger part names whose rows the file holds, all of them
    created: datetime


class IndexUnusable(RuntimeError):
    """The index is missing, stale or damaged: read the cell instead."""


def index_dir(storage: Storage, provider: str, resolution: Resolution | str) -> str:
    return storage.path("index", cell_dir(provider, resolution))


def bucket_of(fingerprint: str, buckets: int) -> int:
    """The bucket of a fingerprint: a hash of it, so synthetic, non-random fingerprints spread too."""
    digest = hashlib.blake2b(fingerprint.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


def buckets_for(rows: int) -> int:
    """A power of two, so that buckets hold about ``TARGET_BUCKET_ROWS`` rows."""
    n = 1
    while n * TARGET_BUCKET_ROWS < rows and n < MAX_BUCKETS:
        n *= 2
    return n


def bucket_ids(fingerprints: pa.ChunkedArray | pa.Array, buckets: int) -> pa.Array:
    """``bucket_of`` of every value (a null fingerprint goes to bucket 0), hashing each distinct value once.
    The chunks are encoded as they are (they share one dictionary), not copied into one array first, and
    the distinct values become Python strings ``_HASHED`` at a time."""
    if buckets == 1:
        return pa.array([0] * len(fingerprints), pa.int32())
    if isinstance(fingerprints, pa.Array):
        fingerprints = pa.chunked_array([fingerprints])
    if fingerprints.null_count:
        fingerprints = pc.fill_null(fingerprints, "")
    encoded = pc.dictionary_encode(fingerprints)
    if not encoded.num_chunks:
        return pa.array([], pa.int32())
    distinct = encoded.chunks[-1].dictionary  # the memo is shared and grows: the last chunk's has every value
    per_value = pa.concat_arrays(
        [
            pa.array([bucket_of(v, buckets) for v in distinct.slice(lo, _HASHED).to_pylist()], pa.int32())
            for lo in range(0, len(distinct), _HASHED)
        ]
        or [pa.array([], pa.int32())]
    )
    return pa.concat_arrays([per_value.take(chunk.indices) for chunk in encoded.chunks])


_HASHED = 4096


def write_index(storage: Storage, provider: str, resolution: Resolution | str) -> IndexManifest | None:
    """Index the cell's live parts as they are now (None: the cell has none); call it under the cell's
    compaction lock."""
    resolution = Resolution(resolution)
    parts = cell_parts(storage, provider, resolution)
    if not parts:
        return None
    table = read_parts(storage, [p.path for p in parts], HISTORY_COLUMNS)
    manifest = _write_buckets(storage, index_dir(storage, provider, resolution), table, parts)
    _forget_old_files(storage, index_dir(storage, provider, resolution), manifest.file)
    return manifest


def _write_buckets(storage: Storage, directory: str, table: pa.Table, parts: list[LedgerPart]) -> IndexManifest:
    buckets = buckets_for(table.num_rows)
    ids = bucket_ids(table["fingerprint"], buckets)
    # a stable sort by bucket keeps each bucket's rows in ledger order (ties on recorded_at stay put)
    order = pc.sort_indices(pa.table({"b": ids, "n": pa.array(range(table.num_rows))}), [("b", "ascending")])
    counts = _counts(ids.take(order), buckets)
    now = datetime.now(UTC)
    name = f"hist-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.arrows"
    offsets, lengths, start = [], [], 0
    with storage.open_atomic(f"{directory}/{name}") as fh:
        position = 0
        for count in counts:
            sink = pa.BufferOutputStream()
            options = _IPC_LOCAL if storage.is_local else _IPC_REMOTE
            with pa.ipc.new_stream(sink, HISTORY_SCHEMA, options=options) as writer:
                # one bucket's rows gathered at a time, not a sorted copy of the whole cell
                writer.write_table(table.take(order.slice(start, count)))
            data = sink.getvalue()
            fh.write(data)
            offsets.append(position)
            lengths.append(data.size)
            position += data.size
            start += count
    manifest = IndexManifest(
        file=name,
        buckets=buckets,
        offsets=offsets,
        lengths=lengths,
        rows=counts,
        covers=sorted(p.name for p in parts),
        created=now,
    )
    storage.write_bytes(f"{directory}/{MANIFEST}", manifest.model_dump_json().encode())  # the commit
    return manifest


def _counts(sorted_ids: pa.Array, buckets: int) -> list[int]:
    counts = [0] * buckets
    if len(sorted_ids):
        vc = pc.value_counts(sorted_ids)
        for value, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
            counts[value] = n
    return counts


def _forget_old_files(storage: Storage, directory: str, keep: str) -> None:
    """Delete bucket files no manifest names any more, once no run can still be reading them."""
    cutoff = datetime.now(UTC) - timedelta(seconds=KEEP_UNREFERENCED_S)
    for path in storage.find(directory):
        name = path.rsplit("/", 1)[-1]
        if name == keep or not name.startswith("hist-"):
            continue
        try:
            created = datetime.strptime(name[5:20], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            continue
        if created < cutoff:
            with contextlib.suppress(FileNotFoundError):
                storage.fs.rm_file(path)


def read_manifest(storage: Storage, provider: str, resolution: Resolution | str) -> IndexManifest:
    path = f"{index_dir(storage, provider, resolution)}/{MANIFEST}"
    try:
        manifest = IndexManifest.model_validate(json.loads(storage.read_bytes(path)))
    except FileNotFoundError as exc:
        raise IndexUnusable("no index yet") from exc
    except (ValueError, ValidationError) as exc:
        raise IndexUnusable(f"{storage.uri(path)} is unreadable: {exc}") from exc
    if manifest.format != INDEX_FORMAT:
        raise IndexUnusable(f"{storage.uri(path)} is of format {manifest.format}, this version reads {INDEX_FORMAT}")
    if not (len(manifest.offsets) == len(manifest.lengths) == len(manifest.rows) == manifest.buckets >= 1):
        raise IndexUnusable(f"{storage.uri(path)} describes {manifest.buckets} buckets inconsistently")
    return manifest


class IndexReader:
    """Buckets of one index file, read one at a time (a range read each; a memory map locally, unless
    ``mapped`` is False: a caller reading each bucket once then holds no page of the file after it)."""

    def __init__(self, storage: Storage, directory: str, manifest: IndexManifest, *, mapped: bool = True) -> None:
        self.storage, self.manifest = storage, manifest
        self.path = f"{directory}/{manifest.file}"
        self._mapped: pa.Buffer | None = None
        if storage.is_local and mapped:
            try:  # the buffer keeps the mapping alive: a later delete of the file cannot pull it away
                self._mapped = pa.memory_map(self.path).read_buffer()
            except FileNotFoundError as exc:
                raise IndexUnusable(f"{self.path} is gone") from exc

    def bucket(self, b: int) -> pa.Table:
        m = self.manifest
        start, length = m.offsets[b], m.lengths[b]
        try:
            if self._mapped is not None:
                data = self._mapped.slice(start, length)
            else:
                data = pa.py_buffer(self.storage.fs.cat_file(self.path, start=start, end=start + length))
            table = pa.ipc.open_stream(data).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise IndexUnusable(f"bucket {b} of {self.storage.uri(self.path)}: {exc}") from exc
        if table.num_rows != m.rows[b] or table.schema != HISTORY_SCHEMA:
            raise IndexUnusable(f"bucket {b} of {self.storage.uri(self.path)} is not what its manifest says")
        return table
