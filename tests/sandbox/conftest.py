"""Raw-HTTP helpers for the sandbox tests: they speak the wire exactly as providers.md reads.

No provider client is used here on purpose: these tests are the proof that the sandbox matches the
documented contract, independently of how our own clients interpret it.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from nbpro_pipeline.providers.http_stack import trusted_ssl_context
from nbpro_pipeline.providers.odirouter.wire import OdiDetailError, OdiGatewayError
from nbpro_pipeline.providers.rivya.wire import RivyaErrorEnvelope

QUEUE = "/v1/queue/nano_banana_pro"
REQUEST_ID = re.compile(r"req_[0-9a-f]{24}")


def wire_client(base_url: str = "", *, timeout: float = 30, **kw) -> httpx.Client:
    """A raw client for the sandbox, on the process's shared SSL context: a context of its own per client
    (the CA bundle loaded again, about 20 ms of CPU) cost more than most of these tests' requests."""
    return httpx.Client(base_url=base_url, timeout=timeout, verify=trusted_ssl_context(), **kw)


def configure(sandbox, provider: str, **section) -> None:
    sandbox.set_config({provider: section})


def slow(queued: float = 0.0, processing: float = 0.0) -> dict:
    return {
        "queued": {"dist": "fixed", "value": queued},
        "processing": {"dist": "fixed", "value": processing},
    }


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    envelope = RivyaErrorEnvelope.model_validate(response.json())
    assert set(response.json()) == {"error"}
    assert envelope.error.code == code
    assert REQUEST_ID.fullmatch(envelope.error.requestId or "")
    assert envelope.error.message
    return envelope.error.message


def assert_gateway_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    envelope = OdiGatewayError.model_validate(response.json())
    assert set(response.json()) == {"error", "request_id"} and envelope.request_id
    assert envelope.error.code == code and envelope.error.message
    return envelope.error.message


def assert_detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    detail = OdiDetailError.model_validate(response.json()).detail
    assert isinstance(detail, str) and detail
    return detail


class RivyaWire:
    def __init__(self, client: httpx.Client) -> None:
        self.http = client

    def create(self, prompt: str = "a red fox", idempotency_key: str | None = None, **params) -> httpx.Response:
        body: dict = {"model": "nano-banana-pro", "prompt": prompt}
        if params:
            body["params"] = params
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.http.post("/api/v1/generations", json=body, headers=headers)

    def get(self, task_id: str) -> httpx.Response:
        return self.http.get(f"/api/v1/generations/{task_id}")

    def wait(self, task_id: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(task_id)
            task = response.json()
            if response.status_code == 200 and task["status"] in ("succeeded", "failed"):
                return task
            if time.monotonic() > deadline:
                raise TimeoutError(f"{task_id} still not finished: {task}")
            time.sleep(0.02)

    def generate(self, prompt: str = "a red fox", **params) -> dict:
        created = self.create(prompt, **params)
        assert created.status_code == 200, created.text
        return self.wait(created.json()["id"])

    def credits(self) -> int:
        return self.http.get("/api/v1/credits").json()["current_credits"]


class OdiWire:
    def __init__(self, client: httpx.Client) -> None:
        self.http = client

    def submit(self, body: dict | None = None, **fields) -> httpx.Response:
        return self.http.post(QUEUE, json=body if body is not None else {"prompt": "a red fox", **fields})

    def status(self, request_id: str) -> httpx.Response:
        return self.http.get(f"{QUEUE}/requests/{request_id}/status")

    def response(self, request_id: str) -> httpx.Response:
        return self.http.get(f"{QUEUE}/requests/{request_id}/response")

    def cancel(self, request_id: str) -> httpx.Response:
        return self.http.put(f"{QUEUE}/requests/{request_id}/cancel")

    def wait(self, request_id: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            response = self.status(request_id)
            status = response.json()
            if response.status_code == 200 and status["status"] == "COMPLETED":
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"{request_id} still not completed: {status}")
            time.sleep(0.02)

    def generate(self, **fields) -> dict:
        submitted = self.submit(**fields)
        assert submitted.status_code == 200, submitted.text
        request_id = submitted.json()["request_id"]
        self.wait(request_id)
        result = self.response(request_id)
        assert result.status_code == 200, result.text
        return result.json()


@pytest.fixture
def http(sandbox) -> Iterator[httpx.Client]:
    """No credentials: for CDN downloads and admin routes, and for auth tests."""
    with wire_client(sandbox.base_url) as client:
        yield client


@pytest.fixture
def rivya(sandbox, rivya_key) -> Iterator[RivyaWire]:
    headers = {"Authorization": f"Bearer {rivya_key}"}
    with wire_client(sandbox.rivya_url, headers=headers) as client:
        yield RivyaWire(client)


@pytest.fixture
def odi(sandbox, odirouter_key) -> Iterator[OdiWire]:
    headers = {"Authorization": f"Bearer {odirouter_key}"}
    with wire_client(sandbox.odirouter_url, headers=headers) as client:
        yield OdiWire(client)
