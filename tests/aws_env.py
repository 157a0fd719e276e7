"""Pointing boto/s3fs at a test's own S3 server through the environment, and back.

s3fs caches filesystem instances, and a cached one keeps the endpoint and credentials it was made with:
without clearing that cache, a test run after another one's S3 server had gone (the cluster test's,
inside its network namespaces) would still talk to the old endpoint."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

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
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        s3fs.S3FileSystem.clear_instance_cache()
