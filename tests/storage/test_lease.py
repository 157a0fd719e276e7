"""The per-cell lease: one holder at a time, a clear refusal naming it, takeover after expiry, loss noticed."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage
from nbpro_pipeline.storage.exclusive import ExclusiveCreateUnsupported
from nbpro_pipeline.storage.lease import (
    CellBusy,
    HeldLease,
    LeaseInfo,
    LeaseLost,
    LeasePolicy,
    acquire_cell_lease,
    lease_dir,
)

R1K = Resolution.R1K
SLOW = LeasePolicy(ttl_s=30, heartbeat_s=10, clock_skew_s=0)  # nothing expires or renews during a test
FAST = LeasePolicy(ttl_s=1.0, heartbeat_s=0.1, clock_skew_s=0)  # ten beats per ttl: a loaded machine still renews


def take(storage: Storage, run_id: str, policy: LeasePolicy = SLOW) -> HeldLease:
    return acquire_cell_lease(storage, Provider.RIVYA, R1K, run_id, policy)


def generations(storage: Storage) -> list[str]:
    return sorted(p.rsplit("/", 1)[-1] for p in storage.find(lease_dir(storage, Provider.RIVYA, R1K)))


def write_lease(storage: Storage, generation: int, run_id: str, expires_in_s: float, **fields) -> None:
    """A lease file as another process (alive or dead) would have left it."""
    now = datetime.now(UTC)
    given = {"renewed_at": now + timedelta(seconds=expires_in_s - 60), "heartbeat_s": 10, **fields}
    info = LeaseInfo(
        cell="rivya|1K", generation=generation, run_id=run_id, host="elsewhere", pid=4242, token="t" * 32,
        since=now - timedelta(minutes=5), expires_at=now + timedelta(seconds=expires_in_s), ttl_s=60, **given,
    )  # fmt: skip
    path = f"{lease_dir(storage, Provider.RIVYA, R1K)}/lease-{generation:06d}.json"
    storage.write_bytes(path, info.model_dump_json().encode())


def test_one_holder_a_second_run_refuses_naming_it_and_release_frees_the_cell(any_storage):
    first = take(any_storage, "run-a")
    with pytest.raises(CellBusy) as busy:
        take(any_storage, "run-b")
    assert busy.value.holder.run_id == "run-a" and busy.value.holder.generation == 1
    message = str(busy.value)
    for expected in ("cell rivya|1K is busy", "run-a", first.info.host, str(first.info.pid), "since:",
                     "last heartbeat:", "expires at:", "What to do", "expires by itself at"):  # fmt: skip
        assert expected in message, expected
    first.release()
    second = take(any_storage, "run-b")  # released: taken at once, no wait for the expiry
    assert second.info.generation == 2
    second.release()
    assert generations(any_storage) == ["lease-000001.json", "lease-000002.json"]


def test_an_expired_lease_is_taken_over_and_its_holder_notices(local_storage):
    dead = take(local_storage, "run-dead", FAST)
    dead._stop.set()  # a frozen or killed holder: no more heartbeats, no release
    with pytest.raises(CellBusy):
        take(local_storage, "run-next", FAST)  # still fresh
    time.sleep(FAST.ttl_s + 0.1)
    taker = take(local_storage, "run-next", FAST)
    assert taker.info.generation == 2
    assert dead.lost is not None
    dead.renew()  # had it come back: it finds generation 2 and stops
    assert "run-next" in (dead.lost or "") or "not renewed" in (dead.lost or "")
    with pytest.raises(LeaseLost, match="stopped submitting"):
        dead.check()
    dead.release()  # must not touch the new holder's lease
    with pytest.raises(CellBusy, match="run-next"):
        take(local_storage, "run-third", FAST)
    taker.release()


def test_a_takeover_is_noticed_by_the_holder_at_its_next_heartbeat(local_storage):
    holder = take(local_storage, "run-a", FAST)
    # a taker that found generation 1 expired (say the holder's clock is far behind) made generation 2
    write_lease(local_storage, 2, "run-taker", expires_in_s=30)
    deadline = time.monotonic() + 5
    while holder.lost is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert holder.lost is not None and "run-taker" in holder.lost and "elsewhere" in holder.lost
    holder.release()
    with pytest.raises(CellBusy, match="run-taker"):
        take(local_storage, "run-c")


def test_a_holder_that_cannot_renew_gives_the_cell_up_by_its_own_clock(local_storage, monkeypatch):
    holder = take(local_storage, "run-a", FAST)

    def unreachable(self, path, data):
        raise OSError("storage unreachable")

    monkeypatch.setattr(Storage, "write_bytes", unreachable)
    time.sleep(FAST.ttl_s + 0.2)
    assert holder.lost is not None and "not renewed" in holder.lost
    holder.release()  # never raises, even when storage is away


def test_the_heartbeat_keeps_a_long_run_holding(local_storage):
    holder = take(local_storage, "run-a", FAST)
    first_expiry = holder.info.expires_at
    time.sleep(FAST.ttl_s * 2)  # twice the ttl: only the heartbeat keeps it
    with pytest.raises(CellBusy, match="run-a"):
        take(local_storage, "run-b", FAST)
    assert holder.lost is None and holder.info.expires_at > first_expiry
    holder.release()


def test_clock_allowance(local_storage):
    """Expired 2 s ago on our clock, within a 5 s allowance: still the holder's (its clock may be behind).
    A release counts at once, even one stamped in our future (the holder's clock ahead)."""
    write_lease(local_storage, 1, "run-behind", expires_in_s=-2)
    skewed = LeasePolicy(ttl_s=30, heartbeat_s=10, clock_skew_s=5)
    with pytest.raises(CellBusy, match="run-behind") as busy:
        take(local_storage, "run-b", skewed)
    assert 2 <= busy.value.retry_after_s <= 3
    take(local_storage, "run-b", SLOW).release()  # with no allowance it is expired
    write_lease(local_storage, 3, "run-ahead", expires_in_s=600, released_at=datetime.now(UTC) + timedelta(minutes=9))
    assert take(local_storage, "run-c", skewed).info.generation == 4


def test_concurrent_acquirers_in_threads_yield_exactly_one_holder(any_storage):
    barrier = threading.Barrier(12)
    outcomes: list[str] = []

    def contend(i: int) -> None:
        barrier.wait()
        try:
            outcomes.append(f"held {take(any_storage, f'run-{i}').info.generation}")
        except CellBusy as exc:
            outcomes.append(f"busy {exc.holder.generation}")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["busy 1"] * 11 + ["held 1"]


def test_concurrent_takers_of_an_expired_lease_yield_exactly_one_holder(local_storage):
    write_lease(local_storage, 7, "run-dead", expires_in_s=-60)
    barrier = threading.Barrier(8)
    held: list[int] = []

    def contend(i: int) -> None:
        barrier.wait()
        try:
            held.append(take(local_storage, f"run-{i}").info.generation)
        except CellBusy as exc:
            assert exc.holder.generation == 8

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert held == [8]


def _contend_in_process(root: str, i: int, barrier, results) -> None:
    barrier.wait()
    try:
        lease = take(Storage(root), f"proc-{i}")
        results.put(f"held {lease.info.generation}")
        barrier.wait()  # hold until every contender has tried
        lease.release()
    except CellBusy as exc:
        results.put(f"busy {exc.holder.run_id}")
        barrier.wait()


def test_concurrent_acquirers_in_processes_yield_exactly_one_holder(tmp_path):
    ctx = multiprocessing.get_context("fork")
    n = 6
    barrier, results = ctx.Barrier(n), ctx.Queue()
    root = str(tmp_path / "root")
    procs = [ctx.Process(target=_contend_in_process, args=(root, i, barrier, results)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    outcomes = sorted(results.get(timeout=5) for _ in range(n))
    held = [o for o in outcomes if o.startswith("held")]
    assert held == ["held 1"], outcomes
    winner = {o.split()[1] for o in outcomes if o.startswith("busy")}
    assert len(winner) == 1  # every loser names the same holder


def test_old_generations_are_pruned_and_numbers_only_grow(local_storage):
    for i in range(6):
        take(local_storage, f"run-{i}").release()
    assert generations(local_storage) == ["lease-000005.json", "lease-000006.json"]


def test_a_damaged_lease_file_is_taken_over_with_a_warning(local_storage, caplog):
    path = f"{lease_dir(local_storage, Provider.RIVYA, R1K)}/lease-000003.json"
    local_storage.write_bytes(path, b"{not json")
    lease = take(local_storage, "run-a")
    assert lease.info.generation == 4 and "unreadable" in caplog.text
    lease.release()


class _NoExclusiveFS(MemoryFileSystem):
    protocol = "nbpro-noexcl"
    root_marker = ""


def test_a_filesystem_without_atomic_create_is_refused_saying_what_to_use():
    fsspec.register_implementation("nbpro-noexcl", _NoExclusiveFS, clobber=True)
    storage = Storage("nbpro-noexcl://root")
    with pytest.raises(ExclusiveCreateUnsupported, match=r"s3://.*gs://"):
        take(storage, "run-a")


def test_a_lease_file_deleted_by_hand_and_taken_anew_is_noticed_by_its_holder(local_storage):
    holder = take(local_storage, "run-a", FAST)
    holder._stop.set()  # drive the heartbeat by hand
    holder._thread.join()
    local_storage.fs.rm_file(holder.path)
    intruder = take(local_storage, "run-intruder")  # generation 1 again: the number was free
    assert intruder.info.generation == 1
    holder.renew()
    assert holder.lost is not None and "replaced by run run-intruder" in holder.lost
    holder.release()  # leaves the intruder's file alone
    with pytest.raises(CellBusy, match="run-intruder"):
        take(local_storage, "run-c")
    intruder.release()


def test_a_silent_holder_is_waited_out_and_a_renewing_one_refused_at_once(local_storage, caplog):
    """``cell_lease``: a holder silent for more than two heartbeats looks dead and is waited out until its
    lease expires (never taken before); one that renewed within them is refused with ``CellBusy``."""
    import asyncio

    from nbpro_pipeline.storage.lease import cell_lease

    async def enter() -> LeaseInfo:
        async with cell_lease(local_storage, Provider.RIVYA, R1K, "run-next", SLOW) as lease:
            return lease.info

    write_lease(local_storage, 1, "run-busy", 30, heartbeat_s=1, renewed_at=datetime.now(UTC))
    with pytest.raises(CellBusy):
        asyncio.run(enter())
    write_lease(local_storage, 2, "run-dead", 1.5, heartbeat_s=1, renewed_at=datetime.now(UTC) - timedelta(seconds=5))
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    with caplog.at_level("WARNING"):
        taken = asyncio.run(enter())
    assert taken.run_id == "run-next" and taken.generation == 3 and datetime.now(UTC) >= expires
    assert "run-dead has not renewed" in caplog.text and "looks dead; waiting" in caplog.text
