"""Fixtures shared by every test package: a fresh, instant sandbox per test, and API keys; and the order
in which a parallel run (``make test``: pytest-xdist, ``--dist loadscope``) hands out the modules.

The sandbox runs for real (uvicorn in a thread, real sockets) so tests exercise exactly the HTTP the
providers' docs describe; zero latency keeps each test in milliseconds.
"""

import os

import pytest
from hypothesis import settings

from nbpro_pipeline.sandbox import SandboxConfig, SandboxServer

# Property tests are judged by what they assert, not by how long an example takes: on a loaded machine
# hypothesis's 200 ms deadline failed examples whose answers were right ("Unreliable test timings").
settings.register_profile("nbpro", deadline=None)
settings.load_profile("nbpro")


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


def _expected_s(item: pytest.Item) -> float:
    """How long a ``slow`` test may take (its ``timeout`` mark): the longest are started first."""
    mark = item.get_closest_marker("timeout")
    return float(mark.args[0]) if mark and mark.args else 0.0


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist (``--dist loadscope --no-loadscope-reorder``) the unit a worker takes is a module (or a
    class): its tests run in file order and share its fixtures. Units go out in the order left here.

    The slowest units first, one per worker (longest deadline first), so none is left to begin at the
    end; then short ones: a worker starts a test only once it holds the next, so each of those workers
    is handed a second unit at once, which waits behind the slow one. Then the other slow units, then
    the larger units before the smaller, so the run ends on short ones.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if not workers:
        return
    units: dict[str, list[pytest.Item]] = {}
    for item in items:  # xdist's own scope: the node id up to its last "::"
        units.setdefault(item.nodeid.rsplit("::", 1)[0], []).append(item)

    def slow_s(unit: list[pytest.Item]) -> float:
        return max((_expected_s(i) + 1 for i in unit if i.get_closest_marker("slow")), default=0.0)

    slow = sorted((u for u in units.values() if slow_s(u)), key=slow_s, reverse=True)
    rest = sorted((u for u in units.values() if not slow_s(u)), key=len)
    lead, rest = rest[: 2 * workers], rest[2 * workers :]
    ordered = [*slow[:workers], *lead, *slow[workers:], *reversed(rest)]
    items[:] = [item for unit in ordered for item in unit]
