"""A real S3-compatible server for the tests marked ``s3``: moto's standalone server on a random loopback
port, started once per session. The storage code reaches it through s3fs exactly as it would reach AWS:
the endpoint and fake credentials come from the environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``), nothing test-specific is passed to ``Storage``.

Every test gets its own bucket; ``boto3`` (not s3fs) is used to look at what landed in it, so a test
checks the bucket with a second, independent client.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.aws_env import aws_env

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "nbpro-test-key-id",
    "AWS_SECRET_ACCESS_KEY": "nbpro-test-secret-0123456789",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    empty = tmp_path_factory.mktemp("aws") / "none"
    env = {
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
    }
    try:
        with aws_env(env):
            yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_client(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def bucket(s3_client) -> str:
    name = f"nbpro-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


def keys(s3_client, bucket: str, prefix: str = "") -> list[str]:
    """Every object key under ``prefix``, straight from the server (no s3fs, no cache)."""
    out: list[str] = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(out)
