"""Fixtures shared by every test package: a fresh, instant sandbox per test, and API keys.

The sandbox runs for real (uvicorn in a thread, real sockets) so tests exercise exactly the HTTP the
providers' docs describe; zero latency keeps each test in milliseconds.
"""

import pytest

from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer


@pytest.fixture
def rivya_key() -> str:
    return "rvya_sk_test_0123456789"


@pytest.fixture
def odirouter_key() -> str:
    return "odr_test_key_0123456789"


@pytest.fixture
def sandbox(tmp_path):
    with SandboxServer(tmp_path / "sandbox-state", SandboxConfig.zero_latency()) as server:
        yield server
