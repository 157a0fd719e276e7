"""The duplicate rules over a whole load (every batch of every file), from 16 bytes per accepted row.

Each accepted row leaves 8 bytes of the sha256 of its ``prompt_id`` and of its content (``CandidateKeys``).
Rows whose id keys repeat are the only ones looked at again: their exact ids are read back, so ids that
merely share a key are never taken for one another; the content keys then tell ``duplicate_row`` (same
content: the first row is kept) from ``duplicate_id_conflict`` (every row of the id is rejected). Two
different contents with equal 8-byte keys would be taken for duplicates (odds about 2^-64 per pair).
The rules themselves are documented in ``nbpro_pipeline.prompts.validate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SLICE = 1 << 16


@dataclass(frozen=True)
class Member:
    """An accepted row whose id key occurs more than once in the load."""

    position: int  # index among all accepted rows of the load, in file and row order
    uri: str
    row_number: int
    prompt_id: str
    content_key: int


@dataclass(frozen=True)
class DuplicateVerdict:
    code: str  # duplicate_row or duplicate_id_conflict
    message: str


def repeated_positions(id_keys: np.ndarray) -> np.ndarray:
    """Positions (ascending) of the rows whose id key occurs more than once (one sorted copy of the keys,
    not an argsort: this runs over every accepted row of the load)."""
    if len(id_keys) < 2:
        return np.zeros(0, dtype=np.int64)
    ordered = np.sort(id_keys)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    if not len(repeated):
        return np.zeros(0, dtype=np.int64)
    found = []
    for start in range(0, len(id_keys), _SLICE):  # in slices: the temporaries stay small
        part = id_keys[start : start + _SLICE]
        at = np.minimum(np.searchsorted(repeated, part), len(repeated) - 1)
        found.append(np.nonzero(repeated[at] == part)[0] + start)
    return np.concatenate(found).astype(np.int64)


def verdicts(members: list[Member]) -> dict[int, DuplicateVerdict]:
    """Which of ``members`` (in load order) are rejected, and why, by position."""
    groups: dict[str, list[Member]] = {}
    for member in members:
        groups.setdefault(member.prompt_id, []).append(member)
    out: dict[int, DuplicateVerdict] = {}
    for pid, group in groups.items():
        if len(group) < 2:
            continue
        where = {m.position: f"row {m.row_number} of {m.uri}" for m in group}
        if len({m.content_key for m in group}) == 1:
            first = group[0].position
            for m in group[1:]:
                out[m.position] = DuplicateVerdict(
                    "duplicate_row",
                    f"id {pid!r} with the same prompt and parameters as {where[first]}; it is generated "
                    "once, from that row (this row's extra columns are not kept); delete this row",
                )
            continue
        for m in group:
            named = [w for j, w in where.items() if j != m.position]
            others = ", ".join(named[:5]) + (f" and {len(named) - 5} more rows" if len(named) > 5 else "")
            out[m.position] = DuplicateVerdict(
                "duplicate_id_conflict",
                f"id {pid!r} is also used by {others} with a different prompt or parameters; none of "
                "these rows is generated until each prompt has its own id",
            )
    return out
