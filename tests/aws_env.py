"""Pointing boto/s3fs at a test's own S3 server through the environment, and back.

s3fs caches filesystem instances, and a cached one keeps the endpoint and credentials it was made with:
without clearing that cache, a test run after another one's S3 server had gone (the cluster test's,
inside its network namespaces) would still talk to the old endpoint. And s3fs sends every request from
fsspec's one IO thread, which keeps the network namespace it was started in: the cluster test enters its
client host with ``setns``, so that thread is replaced too (the old one stays idle)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import fsspec.asyn
import s3fs

# anything that could point boto at a real account or another endpoint is removed while the test runs
CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


@contextlib.contextmanager
def aws_env(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` (endpoint, credentials, config files) with ``CLEARED`` removed; restore on exit."""
    saved = {k: os.environ.get(k) for k in {*env, *CLEARED}}
    for name in CLEARED:
        os.environ.pop(name, None)
    os.environ.update(env)
    _fresh_filesystems()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _fresh_filesystems()


def _fresh_filesystems() -> None:
    s3fs.S3FileSystem.clear_instance_cache()
    fsspec.asyn.reset_lock()  # a new IO thread (and loop) for the next filesystem, in this thread's namespace
