"""A provider that echoes the request (our key included) into its answers: the key reaches no file under
the storage root, not the quarantined raw body of an unreadable result, not the ledger's messages."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from nbpro_pipeline.providers import OdiRouterClient, RivyaClient
from nbpro_pipeline.providers.registry import Provider
from tests.engine.conftest import prompt_rows
from tests.providers.conftest import FAST_POLL, FAST_RETRY

UNKNOWN = {"rivya": {"rivya_result_shape": "unknown"}, "odirouter": {"odirouter_response_shape": "unknown"}}


class Echoing(httpx.AsyncBaseTransport):
    """The real sandbox, with every JSON answer carrying the request's Authorization header back."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not response.headers.get("content-type", "").startswith("application/json"):
            return response
        body = json.loads(await response.aread())
        auth = request.headers.get("authorization", "")
        if isinstance(body, dict):
            body["echo"] = {"headers": {"Authorization": auth}, "note": f"key was {auth.removeprefix('Bearer ')}"}
            if isinstance(body.get("error"), dict):
                body["error"]["message"] = f"denied for {auth}"
        return httpx.Response(response.status_code, headers={"Content-Type": "application/json"}, json=body)

    async def aclose(self) -> None:
        await self.inner.aclose()


def files_holding(root: Path, secret: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


async def test_an_echoed_key_is_in_no_file_under_the_storage_root(harness, provider, rivya_key, odirouter_key):
    harness.sandbox.set_config(
        {"wire": UNKNOWN[provider.value], provider.value: {"faults": {"task_failed": {"INFERENCE_FAILURE": 0.5}}}}
    )
    key = rivya_key if provider is Provider.RIVYA else odirouter_key
    cls, url = (
        (RivyaClient, harness.sandbox.rivya_url)
        if provider is Provider.RIVYA
        else (OdiRouterClient, harness.sandbox.odirouter_url)
    )
    client = cls(url, key, retry=FAST_RETRY, poll=FAST_POLL, transport=Echoing())
    report = await harness.runner(provider, client).run(prompt_rows(8))
    assert report.failures_by_reason.get("result_unreadable")  # raw bodies were quarantined
    quarantined = [p for p in Path(harness.storage.root).rglob("*.body.*")]
    assert quarantined and all(b"***" in p.read_bytes() for p in quarantined)  # kept, with the key blanked
    assert files_holding(Path(harness.storage.root), key.encode()) == []
    harness.assert_reconciles(provider)
