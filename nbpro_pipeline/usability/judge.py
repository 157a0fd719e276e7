"""The verdict on a cell's newly paid image: blank, a near-duplicate of one of its own references or
of an earlier paid image of the cell, else usable.

Near means both signals agree: the perceptual hashes at most ``duplicate_max_distance`` bits apart and
no cell of the colour grids more than ``duplicate_max_colour_delta`` apart (the hash alone takes one
layout in other colours for the same picture). "Earlier" is the order in which the cell's images were
judged: the first of a pair stays usable, so at most one of two paid copies is ever claimed. Blank
images are left out of the comparison (two blanks are blank, not duplicates). The verdict feeds the
``usable_images`` check, the claims and cost per usable image; it never changes what was billed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.models.ledger import OutcomeStatus
from nbpro_pipeline.storage.filesystem import Storage
from nbpro_pipeline.storage.ledger import read_ledger
from nbpro_pipeline.usability.signals import GRID_SIDE, ImageSignals, hash_distance
from nbpro_pipeline.usability.verdict import Usability

REFERENCE_PREFIX = "reference:"
_GRID_BYTES = GRID_SIDE * GRID_SIDE * 3


class UsabilityRules(BaseModel):
    """The thresholds of the verdict: ``EngineSettings`` declares them and their defaults
    (``usability_rules()``); docs/usability.md measures them."""

    model_config = ConfigDict(frozen=True)

    blank_min_share: float
    duplicate_max_distance: int
    duplicate_max_colour_delta: int


class Judgement(BaseModel):
    model_config = ConfigDict(frozen=True)

    signals: ImageSignals
    usability: Usability
    duplicate_of: str | None = None  # the earlier paid image's task id, or "reference:<sha256>"
    distance: int | None = None


PaidImage = tuple[str, ImageSignals]  # (task id, or "reference:<sha256>"; its signals)


class CellJudge:
    """One cell's paid images as judged so far (loaded from the ledger on first use, by ``earlier``), and
    the verdict on each new one. Safe across the threads that place images: judging and adding are one
    step under a lock, so two copies placed at once cannot both pass as the first."""

    def __init__(self, rules: UsabilityRules, earlier: Callable[[], Iterable[PaidImage]]) -> None:
        self.rules = rules
        self._earlier = earlier
        self._lock = threading.Lock()
        self._loaded = False
        self._keys: list[str] = []
        self._hashes = np.zeros(0, np.uint64)
        self._grids = np.zeros((0, _GRID_BYTES), np.int16)
        self._n = 0

    def judge(self, key: str, signals: ImageSignals, references: Sequence[PaidImage] = ()) -> Judgement:
        """The verdict on the image of task ``key``, given the request's ``references``; it joins the
        cell's paid images unless it is blank."""
        if signals.uniform_share >= self.rules.blank_min_share:
            return Judgement(signals=signals, usability=Usability.BLANK)
        for ref_key, ref in references:
            distance = self.near(signals, ref)
            if distance is not None:
                return Judgement(signals=signals, usability=Usability.REFERENCE_COPY, duplicate_of=ref_key,
                                 distance=distance)  # fmt: skip
        with self._lock:
            if not self._loaded:
                for earlier_key, earlier in self._earlier():
                    self._add(earlier_key, earlier)
                self._loaded = True
            found = self._first_near(signals)
            self._add(key, signals)
        if found is None:
            return Judgement(signals=signals, usability=Usability.USABLE)
        return Judgement(signals=signals, usability=Usability.DUPLICATE, duplicate_of=found[0], distance=found[1])

    def near(self, a: ImageSignals, b: ImageSignals) -> int | None:
        """The hash distance when ``a`` and ``b`` are near-duplicates, else None."""
        distance = hash_distance(a.phash, b.phash)
        if distance > self.rules.duplicate_max_distance:
            return None
        delta = np.abs(_grid(a) - _grid(b)).max()
        return distance if delta <= self.rules.duplicate_max_colour_delta else None

    def _first_near(self, signals: ImageSignals) -> tuple[str, int] | None:
        n = self._n
        if n == 0:
            return None
        distances = np.bitwise_count(self._hashes[:n] ^ np.uint64(int(signals.phash, 16)))
        close = distances <= self.rules.duplicate_max_distance
        if close.any():
            deltas = np.abs(self._grids[:n][close] - _grid(signals)).max(axis=1)
            hits = np.flatnonzero(close)[deltas <= self.rules.duplicate_max_colour_delta]
            if len(hits):
                first = int(hits[0])
                return self._keys[first], int(distances[first])
        return None

    def _add(self, key: str, signals: ImageSignals) -> None:
        if self._n == len(self._hashes):  # grow by doubling: judging stays O(images) per image
            size = max(64, 2 * self._n)
            self._hashes = np.resize(self._hashes, size)
            self._grids = np.resize(self._grids, (size, _GRID_BYTES))
        self._hashes[self._n] = np.uint64(int(signals.phash, 16))
        self._grids[self._n] = _grid(signals)
        self._keys.append(key)
        self._n += 1


def _grid(signals: ImageSignals) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(signals.colour_grid), np.uint8).astype(np.int16)


_EARLIER_COLUMNS = ["task_id", "status", "usability", "image_phash", "image_colour_grid", "image_uniform_share",
                    "recorded_at"]  # fmt: skip


def earlier_paid_images(storage: Storage, provider: str, resolution: Resolution) -> list[PaidImage]:
    """The cell's stored, judged, not blank images, oldest first: what a new image is compared with."""
    table = read_ledger(storage, provider=provider, resolution=resolution, columns=_EARLIER_COLUMNS)
    keep = pc.and_(
        pc.fill_null(pc.equal(table["status"], OutcomeStatus.SUCCEEDED.value), False),
        pc.fill_null(pc.not_equal(table["usability"], Usability.BLANK.value), False),
    )
    rows = table.filter(pc.and_(keep, pc.is_valid(table["image_phash"]))).sort_by("recorded_at").to_pylist()
    return [
        (r["task_id"] or "", ImageSignals(phash=r["image_phash"], colour_grid=r["image_colour_grid"],
                                          uniform_share=r["image_uniform_share"] or 0.0))
        for r in rows
    ]  # fmt: skip
