"""Environment proxies, proved with a real forward proxy (proxy.py) on loopback that must see the calls:
a client made in-process with HTTP_PROXY (either case) or HTTPS_PROXY to a TLS origin, NO_PROXY
bypassing it, and a real ``nbpro run-cell`` subprocess against the sandbox."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbpro_pipeline.models.common import TaskState
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.providers import RivyaClient

from .conftest import FAST_POLL, FAST_RETRY
from .http_servers import ForwardProxy, Origin, json_answer, make_tls

REPO = Path(__file__).resolve().parents[2]
PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)
pytestmark = pytest.mark.external  # the proxy is a process of its own


@pytest.fixture(scope="module")
def forward_proxy(tmp_path_factory):
    proxy = ForwardProxy(tmp_path_factory.mktemp("proxy"))
    yield proxy
    proxy.close()


@pytest.fixture
def clean_env(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _host(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
async def test_env_proxy_carries_api_calls_and_downloads(sandbox, rivya_key, forward_proxy, clean_env, variable):
    clean_env.setenv(variable, forward_proxy.url)
    before = len(forward_proxy.requests())
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=FAST_RETRY, poll=FAST_POLL) as client:
        submitted = await client.submit(GenerationRequest(prompt="through the proxy"))
        final = await client.wait(submitted.task_id)
        assert final.state is TaskState.SUCCEEDED
        sink = io.BytesIO()
        await client.fetch_result(final, sink)
    host = _host(sandbox.rivya_url)
    seen = forward_proxy.wait_for(lambda s: any(r.startswith("GET") and "/api/" not in r for r in s[before:]))[before:]
    assert f"POST {host}/api/v1/generations" in seen
    assert f"GET {host}/api/v1/generations/{submitted.task_id}" in seen
    assert any(r.startswith(f"GET {host}/") and "/api/" not in r for r in seen)  # the image download
    assert sink.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
async def test_no_proxy_bypasses_the_proxy(sandbox, rivya_key, forward_proxy, clean_env, variable):
    clean_env.setenv("HTTP_PROXY", forward_proxy.url)
    clean_env.setenv(variable, "127.0.0.1")
    host = _host(sandbox.rivya_url)
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=FAST_RETRY) as client:
        assert (await client.balance()).amount > 0
    # a call that does go through the proxy afterwards, so its log is known to be up to date
    clean_env.delenv(variable)
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=FAST_RETRY) as client:
        await client.models()
    seen = forward_proxy.wait_for(lambda s: f"GET {host}/api/v1/models" in s)
    assert f"GET {host}/api/v1/models" in seen
    assert f"GET {host}/api/v1/credits" not in seen


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
async def test_https_proxy_tunnels_to_a_tls_origin_trusted_by_ssl_cert_file(
    tmp_path, forward_proxy, clean_env, variable
):
    tls = make_tls(tmp_path)
    clean_env.setenv("SSL_CERT_FILE", str(tls.ca_file))
    clean_env.setenv(variable, forward_proxy.url)
    api = Origin({("GET", "/api/v1/credits"): json_answer('{"current_credits": 5}')}, ssl_context=tls.server_context)
    async with api:
        async with RivyaClient(api.url, "rvya_sk_tls_proxy_test", retry=FAST_RETRY) as client:
            assert (await client.balance()).amount == 5
        seen = forward_proxy.wait_for(lambda s: f"CONNECT {_host(api.url)}" in s)
    assert f"CONNECT {_host(api.url)}" in seen
    assert [s.authorization for s in api.seen] == ["Bearer rvya_sk_tls_proxy_test"]  # end to end inside TLS


def test_run_cell_subprocess_goes_through_http_proxy(sandbox, forward_proxy, tmp_path):
    table = tmp_path / "prompts.csv"
    table.write_text("id,prompt\na,a red kite over dunes\nb,a blue boat at dawn\n")
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.update(RIVYA_API_KEY="rvya_sk_cli_proxy_test", HTTP_PROXY=forward_proxy.url, PYTHONPATH=str(REPO))
    before = len(forward_proxy.requests())
    cmd = [
        sys.executable, "-m", "nbpro_pipeline.cli", "run-cell", str(table), "--cell", "rivya|1K",
        "--storage", str(tmp_path / "store"), "--base-url", sandbox.rivya_url, "--poll-first-delay", "0", "--json",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["succeeded"] == 2
    host = _host(sandbox.rivya_url)
    seen = forward_proxy.wait_for(lambda s: s[before:].count(f"POST {host}/api/v1/generations") >= 2)[before:]
    assert seen.count(f"POST {host}/api/v1/generations") == 2
    assert sum(r.startswith(f"GET {host}/") and "/api/" not in r for r in seen) == 2  # both downloads
    assert sandbox.stats()["rivya"]["tasks_created"] == 2
