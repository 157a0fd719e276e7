"""One writer per cell: a lease on the storage root that a second run of the same cell refuses on.

Layout: ``<root>/leases/provider=…/resolution=…/lease-000042.json``, one JSON file (``LeaseInfo``) per
*generation*. The newest generation says who holds the cell.

- **Acquire.** Read the newest generation n. If it is live (not released, not expired) the run refuses
  with ``CellBusy`` naming the holder. If it is released or expired, create generation n+1 with an
  atomic create-if-absent (``storage.exclusive``): of any number of takers exactly one creates it, and the
  others then find n+1 live and refuse. No file is ever overwritten or deleted by anyone but its holder,
  except generations below n-1, which two newer ones have superseded (pruning).
- **Heartbeat.** A background thread rewrites the holder's own file every ``heartbeat_s`` with a new
  ``renewed_at`` and ``expires_at = now + ttl_s``. A killed holder stops renewing; ``ttl_s`` later (plus
  the clock allowance) the next run takes over.
- **Loss.** The holder has lost the cell when a newer generation exists (someone took over), when its own
  file is gone, or when it has not renewed for ``ttl_s`` by its own monotonic clock (others may take over
  from then on, so it must not assume it still holds). ``HeldLease.lost`` then says why: the engine stops
  submitting and ends with ``LeaseLost``; what the run already booked is still written.
- **Release.** On leaving the ``cell_lease`` block, whether the run ended cleanly or raised (nothing of the
  run writes after it), the holder rewrites its file with ``released_at``: kept rather than deleted, so
  generation numbers only grow and the next run takes n+1 at once instead of waiting for the expiry.
- **Clocks.** Files hold wall-clock UTC. A taker counts a lease expired only when its own clock is past
  ``expires_at + clock_skew_s``: a holder clock behind by less than the allowance never loses the cell
  early; a holder clock ahead only delays a takeover by that much. A holder judges its own expiry on
  ``time.monotonic``, never on wall time, so a clock step on its machine cannot make it overstay.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.storage.exclusive import create_if_absent, verify_exclusive_create
from nbpro_pipeline.storage.filesystem import Storage, cell_dir

log = logging.getLogger(__name__)

_NAME = re.compile(r"^lease-(\d{6,})\.json$")
_KEEP_BEHIND = 1  # generations kept below the newest: the one taken over, for the record
_ACQUIRE_TRIES = 5  # each lost race means someone else now holds the cell, so a few tries always settle


class LeasePolicy(BaseModel):
    """How long a lease lives unrenewed, how often it is renewed, and how much clocks may disagree."""

    model_config = ConfigDict(frozen=True)

    ttl_s: float = Field(default=60.0, gt=0)
    heartbeat_s: float = Field(default=10.0, gt=0)
    clock_skew_s: float = Field(default=5.0, ge=0)

    @model_validator(mode="after")
    def _renews_in_time(self) -> LeasePolicy:
        check_lease_timings(self.ttl_s, self.heartbeat_s)
        return self


def check_lease_timings(ttl_s: float, heartbeat_s: float) -> None:
    """A lease must be renewed well within its lifetime; ValueError saying so otherwise."""
    if heartbeat_s >= ttl_s:
        raise ValueError(
            f"the lease heartbeat ({heartbeat_s:g} s) must be shorter than its ttl ({ttl_s:g} s), ideally a "
            "third of it or less, or the lease expires between renewals"
        )


class LeaseInfo(BaseModel):
    """One lease file: who holds (or held) a cell, since when, and until when unless renewed."""

    model_config = ConfigDict(frozen=True)

    cell: str
    generation: int = Field(ge=1)
    run_id: str
    host: str
    pid: int
    token: str  # random per acquisition: tells two holders with one run id apart
    since: datetime
    renewed_at: datetime
    expires_at: datetime
    ttl_s: float
    heartbeat_s: float
    released_at: datetime | None = None

    def takeover_at(self, clock_skew_s: float) -> datetime:
        """When another run may take the cell over, on that run's clock."""
        return self.released_at or self.expires_at + timedelta(seconds=clock_skew_s)

    def live_at(self, now: datetime, clock_skew_s: float) -> bool:
        """Whether another run must still keep off; a released lease never is, whatever the clocks say."""
        return self.released_at is None and now <= self.takeover_at(clock_skew_s)


def _ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(at: datetime, now: datetime) -> str:
    s = (now - at).total_seconds()
    if s > -1:  # under a second ahead is rounding and request time, not a clock worth naming
        return f"{max(s, 0):.0f} s ago"
    return f"{-s:.0f} s in the future: its clock is ahead of ours"


class CellBusy(RuntimeError):
    """Another live run holds this cell's lease: this run did nothing and must not run now."""

    def __init__(self, holder: LeaseInfo, uri: str, clock_skew_s: float, now: datetime | None = None) -> None:
        self.holder, self.uri = holder, uri
        self.takeover_at = holder.takeover_at(clock_skew_s)
        now = now or datetime.now(UTC)
        wait = max(0.0, (self.takeover_at - now).total_seconds())
        super().__init__(
            f"cell {holder.cell} is busy: another run holds its lease, so this run submitted nothing.\n"
            f"  holder run id:   {holder.run_id}\n"
            f"  host, pid:       {holder.host}, {holder.pid}\n"
            f"  since:           {_ts(holder.since)} ({_ago(holder.since, now)})\n"
            f"  last heartbeat:  {_ts(holder.renewed_at)} ({_ago(holder.renewed_at, now)}, every "
            f"{holder.heartbeat_s:g} s)\n"
            f"  expires at:      {_ts(self.takeover_at)} (in {wait:.0f} s) if the holder stops renewing it\n"
            f"  lease file:      {uri}\n"
            "What to do: wait for that run to finish, then run the cell again (a re-run pays only for gaps). If "
            f"that run crashed or was killed, its lease expires by itself at {_ts(self.takeover_at)}: run again "
            "after that. Do not delete the lease file while that run may be alive."
        )

    @property
    def retry_after_s(self) -> float:
        """Seconds until the holder's lease expires if it is not renewed (0 if it already has)."""
        return max(0.0, (self.takeover_at - datetime.now(UTC)).total_seconds())


class LeaseLost(RuntimeError):
    """This run lost its cell's lease mid-run: it stopped submitting; what it had booked is written."""

    def __init__(self, cell: str, reason: str) -> None:
        self.cell, self.reason = cell, reason
        super().__init__(
            f"cell {cell}: this run lost its lease ({reason}). It stopped submitting new prompts; the tasks it "
            "had already submitted were finished and booked. Another run may hold the cell now: run it again "
            "after that run ends (a re-run pays only for gaps)."
        )


def lease_dir(storage: Storage, provider: str, resolution: Resolution) -> str:
    return storage.path("leases", cell_dir(provider, resolution))


def _path(directory: str, generation: int) -> str:
    return f"{directory}/lease-{generation:06d}.json"


def _generations(storage: Storage, directory: str) -> list[int]:
    """Every generation present, ascending (numerically: widths grow past 999999)."""
    found = (_NAME.match(p.rsplit("/", 1)[-1]) for p in storage.find(directory))
    return sorted(int(m.group(1)) for m in found if m)


def _read(storage: Storage, path: str) -> LeaseInfo | None:
    """The lease at ``path``, None if damaged (files are written whole, so only by hand); a file pruned
    since the listing raises ``FileNotFoundError``."""
    try:
        return LeaseInfo.model_validate_json(storage.read_bytes(path))
    except (ValidationError, ValueError) as exc:
        log.warning("lease file %s is unreadable (%s); treating it as expired", storage.uri(path), exc)
        return None


class HeldLease:
    """The lease this process holds on one cell, renewed by a daemon thread until ``release``."""

    def __init__(self, storage: Storage, directory: str, info: LeaseInfo, policy: LeasePolicy) -> None:
        self.storage, self.directory, self.policy = storage, directory, policy
        self.info = info
        self.path = _path(directory, info.generation)
        self._last_renewed = time.monotonic()  # when the last renewal that reached storage started
        self._lost: str | None = None
        self._lock = threading.Lock()  # heartbeat and release both write our file: one at a time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"nbpro-lease {info.cell}", daemon=True)
        self._thread.start()

    @property
    def cell(self) -> str:
        return self.info.cell

    @property
    def lost(self) -> str | None:
        """Why this run no longer holds the cell, or None while it does. Once lost, lost for good."""
        if self._lost is None and time.monotonic() - self._last_renewed > self.policy.ttl_s:
            self._mark_lost(f"not renewed for over {self.policy.ttl_s:g} s, so another run may take the cell over")
        return self._lost

    def check(self) -> None:
        """Raise ``LeaseLost`` if the lease is lost."""
        if (reason := self.lost) is not None:
            raise LeaseLost(self.cell, reason)

    def renew(self) -> None:
        """One heartbeat: notice a takeover, else push the expiry ``ttl_s`` past now."""
        started = time.monotonic()
        with self._lock:
            if self._lost is not None:
                return
            if (reason := self._superseded()) is not None:
                self._mark_lost(reason)
                return
            now = datetime.now(UTC)
            renewed = self.info.model_copy(
                update={"renewed_at": now, "expires_at": now + timedelta(seconds=self.policy.ttl_s)}
            )
            self.storage.write_bytes(self.path, renewed.model_dump_json(indent=1).encode())
            self.info, self._last_renewed = renewed, started

    def release(self) -> None:
        """Stop renewing and mark the file released, so the next run need not wait for the expiry. Never
        raises: an unreleased lease simply expires."""
        self._stop.set()
        self._thread.join(timeout=self.policy.ttl_s)
        try:
            with self._lock:
                if self._superseded() is not None:
                    return  # someone else holds the cell now: our file is history, leave it alone
                now = datetime.now(UTC)
                released = self.info.model_copy(update={"released_at": now, "expires_at": now})
                self.storage.write_bytes(self.path, released.model_dump_json(indent=1).encode())
                self.info = released
        except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more; the lease expires
            log.warning("cell %s: could not release the lease %s (%s); it expires by itself", self.cell, self.path, exc)

    def _beat(self) -> None:
        while not self._stop.wait(self.policy.heartbeat_s):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - storage trouble: retried next beat; `lost` after ttl
                log.warning("cell %s: could not renew the lease (%s); retrying in %g s", self.cell, exc,
                            self.policy.heartbeat_s)  # fmt: skip
            if self.lost is not None:
                return

    def _superseded(self) -> str | None:
        """Why the files no longer say we hold the cell (a newer generation, or our file gone or not ours)."""
        generations = _generations(self.storage, self.directory)
        newer = [g for g in generations if g > self.info.generation]
        if newer:
            try:
                other = _read(self.storage, _path(self.directory, newer[-1]))
            except FileNotFoundError:
                other = None
            if other is None:
                return f"a newer lease generation {newer[-1]} exists"
            return f"run {other.run_id} on {other.host} (pid {other.pid}) took the cell over at {_ts(other.since)}"
        try:
            own = _read(self.storage, self.path)
        except FileNotFoundError:
            return f"its lease file {self.storage.uri(self.path)} was removed"
        if own is None or own.token != self.info.token:  # removed by hand, then taken anew under its number
            by = f" by run {own.run_id}" if own else ""
            return f"its lease file {self.storage.uri(self.path)} was replaced{by}"
        return None

    def _mark_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
            log.error("cell %s: LEASE LOST (%s): this run stops submitting new prompts", self.cell, reason)


def acquire_cell_lease(
    storage: Storage, provider: str, resolution: Resolution, run_id: str, policy: LeasePolicy
) -> HeldLease:
    """Take the cell's lease, or raise ``CellBusy`` naming the live holder."""
    directory = lease_dir(storage, provider, resolution)
    verify_exclusive_create(storage, directory)
    cell = f"{provider}|{Resolution(resolution).value}"
    for _ in range(_ACQUIRE_TRIES):
        generations = _generations(storage, directory)
        previous: LeaseInfo | None = None
        if generations:
            try:
                previous = _read(storage, _path(directory, generations[-1]))
            except FileNotFoundError:
                continue  # pruned since the listing: a newer generation exists, look again
            now = datetime.now(UTC)
            if previous is not None and previous.live_at(now, policy.clock_skew_s):
                raise CellBusy(previous, storage.uri(_path(directory, generations[-1])), policy.clock_skew_s, now)
        mine = _new_info(cell, (generations[-1] + 1) if generations else 1, run_id, policy)
        if _create(storage, directory, mine):
            _prune(storage, directory, mine.generation)
            _log_taken(mine, previous, policy)
            return HeldLease(storage, directory, mine, policy)
    raise RuntimeError(
        f"cell {cell}: the lease changed hands {_ACQUIRE_TRIES} times while this run tried to take it; "
        "other runs are starting and ending constantly: run again"
    )


@asynccontextmanager
async def cell_lease(
    storage: Storage, provider: str, resolution: Resolution, run_id: str, policy: LeasePolicy
) -> AsyncIterator[HeldLease]:
    """Hold the cell's lease for the block (``CellBusy`` if another run holds it); released on leaving.

    Both run on the loop's thread, not awaited: a cancellation can then never leave a lease taken with
    nobody to release it, and nothing else of the run is in flight before or after the block."""
    lease = await _acquire_past_a_dead_holder(storage, provider, resolution, run_id, policy)
    try:
        yield lease
    finally:
        lease.release()


async def _acquire_past_a_dead_holder(
    storage: Storage, provider: str, resolution: Resolution, run_id: str, policy: LeasePolicy
) -> HeldLease:
    """``acquire_cell_lease``; a holder that stopped renewing (no heartbeat for two of its intervals: a
    killed run, a dead host) is waited out until its lease expires, then taken over, so a retry right
    after a crash runs instead of failing. A holder that still renews is refused at once."""
    while True:
        try:
            return acquire_cell_lease(storage, provider, resolution, run_id, policy)
        except CellBusy as busy:
            silent = (datetime.now(UTC) - busy.holder.renewed_at).total_seconds()
            if silent <= 2 * busy.holder.heartbeat_s + policy.clock_skew_s:
                raise
            wait = busy.retry_after_s
            log.warning(
                "cell %s: its lease holder %s has not renewed for %.0f s (every %g s) and looks dead; "
                "waiting %.0f s for its lease to expire",
                busy.holder.cell, busy.holder.run_id, silent, busy.holder.heartbeat_s, wait,
            )  # fmt: skip
            await asyncio.sleep(wait + 0.2)


def _new_info(cell: str, generation: int, run_id: str, policy: LeasePolicy) -> LeaseInfo:
    now = datetime.now(UTC)
    return LeaseInfo(
        cell=cell,
        generation=generation,
        run_id=run_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        token=uuid.uuid4().hex,
        since=now,
        renewed_at=now,
        expires_at=now + timedelta(seconds=policy.ttl_s),
        ttl_s=policy.ttl_s,
        heartbeat_s=policy.heartbeat_s,
    )


def _create(storage: Storage, directory: str, mine: LeaseInfo) -> bool:
    """Create ``mine``'s generation; True only if it is ours and still the newest."""
    path = _path(directory, mine.generation)
    if not create_if_absent(storage, path, mine.model_dump_json(indent=1).encode()):
        try:  # a retried request of ours may have landed first (the store retried after a timeout)
            existing = _read(storage, path)
        except FileNotFoundError:
            return False
        if existing is None or existing.token != mine.token:
            return False
    # the number was free because pruning had removed it, so newer generations hold the cell: not ours
    return max(_generations(storage, directory), default=0) == mine.generation


def _prune(storage: Storage, directory: str, generation: int) -> None:
    for old in _generations(storage, directory):
        if old < generation - _KEEP_BEHIND:
            try:
                storage.fs.rm_file(_path(directory, old))
            except OSError as exc:  # left for the next holder to prune
                log.debug("could not prune %s: %s", _path(directory, old), exc)


def _log_taken(mine: LeaseInfo, previous: LeaseInfo | None, policy: LeasePolicy) -> None:
    if previous is None or previous.released_at is not None:
        log.info("cell %s: holding the lease (generation %d)", mine.cell, mine.generation)
        return
    log.warning(
        "cell %s: took the lease over from run %s on %s (pid %d), which expired at %s without releasing it "
        "(crashed or killed?); its journaled tasks are resumed by this run",
        mine.cell, previous.run_id, previous.host, previous.pid, _ts(previous.takeover_at(policy.clock_skew_s)),
    )  # fmt: skip
