"""What a cell run keeps about every row it saw, as compact columns instead of one Python object per row.

A run must remember two things for all of its rows, not just those in flight: which fingerprints it has
already decided (so a duplicate row is not paid twice), and every eligible row's fingerprint and prompt
id (the accounting check). ``FingerprintSet`` holds the first at 32 bytes per fingerprint, ``EligibleLog``
the second as Arrow columns appended in chunks, read back once as ``EligibleRows``.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_CHUNK = 4096  # rows kept as Python objects before they are packed into arrays
_ELIGIBLE_SCHEMA = pa.schema([("fingerprint", pa.string()), ("prompt_id", pa.string())])


def _key(fingerprint: str) -> bytes:
    """The 32 bytes of a sha256 hex fingerprint (``GenerationRequest.fingerprint``)."""
    key = bytes.fromhex(fingerprint)
    if len(key) != 32:
        raise ValueError(f"not a sha256 fingerprint: {fingerprint!r}")
    return key


class FingerprintSet:
    """An exact set of fingerprints at 32 bytes each: the newest in a small set, the rest in sorted numpy
    arrays whose sizes halve from the first to the last (merged like a binary counter: O(log n) arrays),
    each searched by bisection."""

    def __init__(self) -> None:
        self._recent: set[bytes] = set()
        self._levels: list[np.ndarray] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, fingerprint: object) -> bool:
        return isinstance(fingerprint, str) and self._has(_key(fingerprint))

    def add(self, fingerprint: str) -> None:
        key = _key(fingerprint)
        if self._has(key):
            return
        self._recent.add(key)
        self._size += 1
        if len(self._recent) >= _CHUNK:
            self._pack()

    def _has(self, key: bytes) -> bool:
        if key in self._recent:
            return True
        probe = np.array([key], dtype="S32")  # compared as fixed-width bytes, trailing zero bytes included
        for level in self._levels:
            lo, hi = np.searchsorted(level, probe, "left")[0], np.searchsorted(level, probe, "right")[0]
            if hi > lo:
                return True
        return False

    def _pack(self) -> None:
        packed = np.sort(np.array(list(self._recent), dtype="S32"))
        self._recent = set()
        while self._levels and len(self._levels[-1]) <= len(packed):
            packed = np.sort(np.concatenate([self._levels.pop(), packed]), kind="stable")
        self._levels.append(packed)


class EligibleRows(Mapping[str, str]):
    """fingerprint -> prompt id of every eligible row a run saw, in the order first seen, as two Arrow
    columns (``table``). A read-only mapping for the checks; a lookup by key scans the column."""

    def __init__(self, table: pa.Table | None = None) -> None:
        self.table = _ELIGIBLE_SCHEMA.empty_table() if table is None else table.select(_ELIGIBLE_SCHEMA.names)

    def __len__(self) -> int:
        return self.table.num_rows

    def __iter__(self) -> Iterator[str]:
        for batch in self.table.to_batches(max_chunksize=_CHUNK):
            yield from batch.column("fingerprint").to_pylist()

    def __getitem__(self, fingerprint: str) -> str:
        at = pc.index(self.table["fingerprint"], fingerprint).as_py() if len(self) else -1
        if at < 0:
            raise KeyError(fingerprint)
        return self.table["prompt_id"][at].as_py()

    def items(self) -> ItemsView[str, str]:
        return _Items(self)

    def __repr__(self) -> str:
        return f"EligibleRows({len(self)} rows)"


class _Items(ItemsView[str, str]):
    """(fingerprint, prompt id) pairs read off the columns a chunk at a time, not one lookup per key."""

    _mapping: EligibleRows

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for batch in self._mapping.table.to_batches(max_chunksize=_CHUNK):
            yield from zip(batch.column("fingerprint").to_pylist(), batch.column("prompt_id").to_pylist(), strict=True)


class EligibleLog:
    """The eligible rows a run sees, appended as they are decided and read once at the end (``rows``).

    ``note`` is a row seen (its fingerprint keeps the prompt id it was first seen with); ``claim`` is the
    row that goes on to be submitted for its fingerprint, whose prompt id then wins. Duplicates are
    resolved in ``rows``, with Arrow sorts, not with a dict of every fingerprint."""

    def __init__(self) -> None:
        self._fingerprints: list[str] = []
        self._prompt_ids: list[str] = []
        self._claimed: list[bool] = []
        self._batches: list[pa.RecordBatch] = []

    def note(self, fingerprint: str, prompt_id: str) -> None:
        self._add(fingerprint, prompt_id, claimed=False)

    def claim(self, fingerprint: str, prompt_id: str) -> None:
        self._add(fingerprint, prompt_id, claimed=True)

    def _add(self, fingerprint: str, prompt_id: str, *, claimed: bool) -> None:
        self._fingerprints.append(fingerprint)
        self._prompt_ids.append(prompt_id)
        self._claimed.append(claimed)
        if len(self._fingerprints) >= _CHUNK:
            self._pack()

    def _pack(self) -> None:
        if self._fingerprints:
            fps, pids = pa.array(self._fingerprints, pa.string()), pa.array(self._prompt_ids, pa.string())
            claimed = pa.array(self._claimed, pa.bool_())
            self._batches.append(pa.record_batch([fps, pids, claimed], ["fp", "pid", "claimed"]))
        self._fingerprints, self._prompt_ids, self._claimed = [], [], []

    def rows(self) -> EligibleRows:
        """One row per fingerprint, in the order first seen: the claimed prompt id, else the first.
        Worked out on row numbers; the chosen rows' columns are gathered once, in their final order."""
        self._pack()
        if not self._batches:
            return EligibleRows()
        log = pa.Table.from_batches(self._batches)
        log = log.append_column("seq", pa.array(np.arange(log.num_rows)))
        by_fp = pc.sort_indices(log, [("fp", "ascending"), ("seq", "ascending")])
        starts = _group_starts(log["fp"].take(by_fp))  # where each fingerprint's rows begin, sorted by it
        first_seen = by_fp.filter(starts)  # a row's number is its seq: the first row of each fingerprint
        keys = [("fp", "ascending"), ("claimed", "descending"), ("seq", "ascending")]
        chosen = pc.sort_indices(log, keys).filter(starts)  # the same groups, so the same starts
        final = chosen.take(pc.sort_indices(first_seen))
        return EligibleRows(pa.table({"fingerprint": log["fp"].take(final), "prompt_id": log["pid"].take(final)}))


def _group_starts(sorted_fps: pa.ChunkedArray) -> pa.Array:
    """True where a run of equal values in ``sorted_fps`` begins."""
    starts = pc.not_equal(sorted_fps.slice(1), sorted_fps.slice(0, len(sorted_fps) - 1))
    return pa.concat_arrays([pa.array([True]), *starts.chunks])
