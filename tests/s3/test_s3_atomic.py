"""Writes to an object store appear whole or not at all: an exception, or a SIGKILL, in the middle of a
write leaves no object (and keeps the previous version), even once a multipart upload has sent parts."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pyarrow.parquet as pq
import pytest

from nbpro_pipeline.costs import report_parquet
from nbpro_pipeline.storage import Storage
from tests.s3.conftest import keys

pytestmark = pytest.mark.s3

MIB = 1 << 20


def _get(s3_client, bucket: str, key: str) -> bytes:
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_a_failed_write_keeps_the_previous_object(bucket, s3_client):
    storage = Storage(f"s3://{bucket}/root")
    path = storage.path("tables", "t.bin")
    storage.write_bytes(path, b"version 1")
    with pytest.raises(RuntimeError), storage.open_atomic(path) as fh:
        fh.write(b"half of version 2")
        raise RuntimeError("the writer failed")
    assert _get(s3_client, bucket, "root/tables/t.bin") == b"version 1"
    assert keys(s3_client, bucket) == ["root/tables/t.bin"]


def test_a_failed_multipart_write_leaves_no_object_and_no_pending_upload(bucket, s3_client, monkeypatch):
    storage = Storage(f"s3://{bucket}/root")
    monkeypatch.setattr(storage.fs, "default_block_size", 5 * MIB)  # S3's smallest part: 6 MiB is 2 parts
    path = storage.path("images", "big.png")
    with pytest.raises(RuntimeError), storage.open_atomic(path) as fh:
        fh.write(os.urandom(6 * MIB))  # the first part is uploaded here
        raise RuntimeError("the download broke")
    assert keys(s3_client, bucket) == []
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted, not left behind


@pytest.mark.external
def test_a_writer_killed_mid_upload_leaves_no_object(bucket, s3_client):
    child = textwrap.dedent(
        f"""
        import os, sys, time
        from nbpro_pipeline.storage import Storage
        storage = Storage("s3://{bucket}/root")
        storage.fs.default_block_size = 5 * {MIB}
        with storage.open_atomic(storage.path("ledger", "part-0.parquet")) as fh:
            fh.write(os.urandom(6 * {MIB}))
            fh.flush()  # part 1 is on the server now
            print("part sent", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "part sent", proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert keys(s3_client, bucket) == []  # readers see nothing: the upload was never completed
    # the orphaned upload is invisible but billed by S3 until a lifecycle rule aborts it (see docs/deployment.md)
    assert len(s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1


def test_a_report_that_fails_half_way_keeps_the_previous_report(bucket, s3_client, monkeypatch):
    uri = f"s3://{bucket}/root/reports/r.parquet"
    report_parquet.write_report(pd.DataFrame({"provider": ["rivya"], "requests": [1]}), uri)
    before = _get(s3_client, bucket, "root/reports/r.parquet")

    def broken(table, where, **kwargs):
        where.write(b"PAR1 and then nothing")
        raise OSError("disk full")

    monkeypatch.setattr(report_parquet.pq, "write_table", broken)
    with pytest.raises(OSError):
        report_parquet.write_report(pd.DataFrame({"provider": ["odirouter"], "requests": [2]}), uri)
    after = _get(s3_client, bucket, "root/reports/r.parquet")
    assert after == before
    assert pq.read_table(io.BytesIO(after)).column("requests").to_pylist() == [1]
