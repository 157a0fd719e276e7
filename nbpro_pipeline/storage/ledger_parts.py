"""Which ledger part files are live, and what their names say about the rows inside.

A cell's ledger directory holds two kinds of immutable Parquet parts:

- **run parts**, written by ``LedgerWriter``: ``part-YYYYMMDD-HHMMSS-<run>-<seq>-<rand>.parquet``. Every row
  of one part was charged (``coalesce(finished_at, recorded_at)``) on the UTC day in its name, and the
  time is its earliest row's, so "what was spent on day D" reads only the parts named for D. Parts of
  older pipeline versions (``part-YYYYMMDDTHHMMSS-…``, stamped at flush time, rows at or before it) and
  foreign names (``part-0.parquet``) are still read, with their day range unknown below (or at all).
- **compacted parts**, written by ``compact_ledger``:
  ``part-compact-<group>-<firstday>-<lastday>-<createdTHHMMSS>-<hash>.parquet``: many parts of one month
  ("group") merged, sorted by charge time. Their Parquet footer lists the parts they *replace*
  (``nbpro.replaces``).

Compaction commits by writing the compacted part (atomic: rename locally, one PUT on object stores) and
only then deletes its sources. A kill in between leaves both; readers here drop every part an existing
compacted part replaces, so no row is ever read twice or lost. The footers are read only when a part that
could be a source is still present (one older than the compacted part), which after a clean compaction is
none: the steady state costs one directory listing per cell, whatever the size of the history.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pyarrow.parquet as pq

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.storage.filesystem import Storage, cell_dir

REPLACES_KEY = b"nbpro.replaces"
UNKNOWN_GROUP = "000000"

_RUN = re.compile(r"^part-(\d{8})-(\d{6})-")
_LEGACY = re.compile(r"^part-(\d{8})T(\d{6})-")
_COMPACT = re.compile(r"^part-compact-(\d{6})-(\d{8})-(\d{8})-(\d{8}T\d{6})-[0-9a-f]+\.parquet$")


@dataclass(frozen=True)
class LedgerPart:
    """One part file and what its name promises about its rows (``None``: unknown, read it to know)."""

    path: str
    compacted: bool
    group: str  # YYYYMM of its rows' charge month (compaction merges one group into one part)
    first_day: date | None  # no row charged before this day
    last_day: date | None  # no row charged after this day
    created: datetime | None  # no later than the file's creation; None: unknown

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def may_hold(self, day: date) -> bool:
        """Whether a row charged on ``day`` can be in this part."""
        return (self.first_day is None or self.first_day <= day) and (self.last_day is None or day <= self.last_day)


def _day(text: str) -> date:
    return datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC).date()


def parse_part(path: str) -> LedgerPart:
    name = path.rsplit("/", 1)[-1]
    if m := _COMPACT.match(name):
        created = datetime.strptime(m[4], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        return LedgerPart(path, True, m[1], _day(m[2]), _day(m[3]), created)
    if m := _RUN.match(name):
        stamp = datetime.strptime(m[1] + m[2], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        return LedgerPart(path, False, m[1][:6], stamp.date(), stamp.date(), stamp)
    if m := _LEGACY.match(name):  # stamped at flush: rows at or before it
        stamp = datetime.strptime(m[1] + m[2], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        return LedgerPart(path, False, m[1][:6], None, stamp.date(), stamp)
    return LedgerPart(path, False, UNKNOWN_GROUP, None, None, None)


def replaced_by(storage: Storage, part: LedgerPart) -> frozenset[str]:
    """The file names a compacted part replaces (from its footer)."""
    with storage.fs.open(part.path, "rb") as fh:
        metadata = pq.read_metadata(fh).metadata or {}
    return frozenset(json.loads(metadata.get(REPLACES_KEY, b"[]")))


def live_parts(storage: Storage, paths: list[str]) -> list[LedgerPart]:
    """The parts among ``paths`` (one cell's) whose rows count: all but those a kept compacted part
    replaces. A compacted part is itself dropped when another one replaces everything it does (two
    compactions that raced, or a kill before the older one was deleted). Sorted by name."""
    parts = sorted((parse_part(p) for p in paths if p.endswith(".parquet")), key=lambda p: p.name)
    compacted = [p for p in parts if p.compacted]
    # footers are read only where a source may still be present, but then for every compacted part of
    # that group, so that two of them are always weighed against each other
    groups = {c.group for c in compacted if any(_could_be_source(q, c) for q in parts)}
    replaces = {c.name: replaced_by(storage, c) for c in compacted if c.group in groups}
    kept = [c for c in replaces if not _dominated(c, replaces)]
    dead = set().union(*(replaces[c] for c in kept)) | (set(replaces) - set(kept))
    return [p for p in parts if p.name not in dead]


def _dominated(name: str, replaces: dict[str, frozenset[str]]) -> bool:
    mine = replaces[name]
    return any(
        other != name and mine <= theirs and (mine != theirs or other < name) for other, theirs in replaces.items()
    )


def _could_be_source(q: LedgerPart, c: LedgerPart) -> bool:
    if q is c or (q.group != c.group and q.group != UNKNOWN_GROUP):
        return False
    return q.created is None or c.created is None or q.created <= c.created


def provider_name(provider: str) -> str:
    """The ``provider=`` directory value: the provider's name."""
    return str(provider)


def cell_parts(storage: Storage, provider: str, resolution: Resolution | str) -> list[LedgerPart]:
    """The live parts of one cell, listing only that cell's directory."""
    return live_parts(storage, storage.find(storage.path("ledger", cell_dir(provider, resolution))))


def ledger_parts(
    storage: Storage, *, provider: str | None = None, resolution: Resolution | str | None = None
) -> list[LedgerPart]:
    """The live parts of every cell matching the filters, each cell's directory listed on its own when
    both are given, else the narrowest directory that holds them."""
    if provider is not None and resolution is not None:
        return cell_parts(storage, provider, resolution)
    base = storage.ledger_dir() if provider is None else storage.path("ledger", f"provider={provider_name(provider)}")
    by_cell: dict[str, list[str]] = {}
    for path in storage.find(base):
        by_cell.setdefault(path.rsplit("/", 1)[0], []).append(path)
    wanted = None if resolution is None else f"/resolution={Resolution(resolution).value}"
    out: list[LedgerPart] = []
    for directory, paths in sorted(by_cell.items()):
        if wanted is None or directory.endswith(wanted):
            out.extend(live_parts(storage, paths))
    return out
