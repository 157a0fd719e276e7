"""The per-cell lease on S3: create-if-absent by a conditional PUT (``If-None-Match: *``), which the moto
server honours as AWS does; a store that ignores the header is refused rather than trusted."""

from __future__ import annotations

import json
import threading
import time

import pytest

from nbpro_pipeline.models.common import Resolution
from nbpro_pipeline.providers.registry import Provider
from nbpro_pipeline.storage import Storage
from nbpro_pipeline.storage.exclusive import ExclusiveCreateUnsupported
from nbpro_pipeline.storage.lease import CellBusy, LeasePolicy, acquire_cell_lease
from tests.s3.conftest import keys

pytestmark = pytest.mark.s3

SLOW = LeasePolicy(ttl_s=30, heartbeat_s=10, clock_skew_s=0)
FAST = LeasePolicy(ttl_s=1.0, heartbeat_s=0.2, clock_skew_s=0)
PREFIX = "nbpro/leases/provider=rivya/resolution=1K/"


def take(root: str, run_id: str, policy: LeasePolicy = SLOW):
    return acquire_cell_lease(Storage(root), Provider.RIVYA, Resolution.R1K, run_id, policy)


def test_acquire_refuse_release_on_s3(bucket, s3_client):
    root = f"s3://{bucket}/nbpro"
    first = take(root, "run-a")
    with pytest.raises(CellBusy, match="run-a") as busy:
        take(root, "run-b")
    assert f"s3://{bucket}/{PREFIX}lease-000001.json" in str(busy.value)
    first.release()
    body = json.loads(s3_client.get_object(Bucket=bucket, Key=f"{PREFIX}lease-000001.json")["Body"].read())
    assert body["run_id"] == "run-a" and body["released_at"]
    take(root, "run-b").release()
    assert keys(s3_client, bucket, PREFIX) == [f"{PREFIX}lease-000001.json", f"{PREFIX}lease-000002.json"]


def test_concurrent_acquirers_on_s3_yield_exactly_one_holder(bucket):
    root = f"s3://{bucket}/nbpro"
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def contend(i: int) -> None:
        barrier.wait()
        try:
            outcomes.append(f"held {take(root, f'run-{i}').info.generation}")
        except CellBusy as exc:
            outcomes.append(f"busy {exc.holder.generation}")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["busy 1"] * 7 + ["held 1"]


def test_an_expired_lease_on_s3_is_taken_over_and_the_old_holder_notices(bucket):
    root = f"s3://{bucket}/nbpro"
    dead = take(root, "run-dead", FAST)
    dead._stop.set()  # killed: no more heartbeats, no release
    with pytest.raises(CellBusy):
        take(root, "run-next", FAST)
    time.sleep(FAST.ttl_s + 0.2)
    taker = take(root, "run-next", FAST)
    assert taker.info.generation == 2
    time.sleep(FAST.heartbeat_s * 3)  # the taker's heartbeat renews over S3 meanwhile
    assert taker.lost is None
    assert dead.lost is not None
    dead.release()
    with pytest.raises(CellBusy, match="run-next"):
        take(root, "run-third", FAST)
    taker.release()


def test_a_store_that_ignores_if_none_match_is_refused(bucket, monkeypatch):
    storage = Storage(f"s3://{bucket}/nbpro")
    real = storage.fs.pipe_file

    def careless(path, value, mode="overwrite", **kw):  # an S3-compatible store without conditional writes
        return real(path, value, **kw)

    monkeypatch.setattr(storage.fs, "pipe_file", careless)  # s3fs binds its sync methods per instance
    with pytest.raises(ExclusiveCreateUnsupported, match="If-None-Match"):
        acquire_cell_lease(storage, Provider.RIVYA, Resolution.R1K, "run-a", SLOW)
