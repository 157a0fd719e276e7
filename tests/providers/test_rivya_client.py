"""RivyaClient against the sandbox over real HTTP: the happy path, the wallet, idempotency,
every error class, retries under injected faults, and that the key never leaks."""

import asyncio
import hashlib
import io
import logging
import time

import pytest
from PIL import Image

from nbpro_pipeline.models import GenerationRequest, TaskState, pixel_size
from nbpro_pipeline.models.request import ReferenceImage
from nbpro_pipeline.providers import (
    AuthError,
    IdempotencyConflictError,
    InsufficientFundsError,
    InvalidReferenceError,
    InvalidRequestError,
    NotFoundError,
    RetryableError,
    RetryPolicy,
    RivyaClient,
    UnsupportedOperationError,
    idempotency_key,
)
from nbpro_pipeline.providers.registry import Provider
from tests.providers.conftest import FAST_POLL, FAST_RETRY, configure, entries


def png_bytes(w: int, h: int, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 30)).save(buf, fmt)
    return buf.getvalue()


async def generate(client, request):
    submitted = await client.submit(request)
    final = await client.wait(submitted.task_id)
    return submitted, final


async def test_create_poll_download_gives_exact_size_and_hash(rivya, sandbox, tmp_path):
    request = GenerationRequest(prompt="a lighthouse at dusk", aspect_ratio="16:9", resolution="2K")
    submitted, final = await generate(rivya, request)
    assert submitted.task_id.startswith("gen_") and submitted.idempotency_key == idempotency_key(
        "standalone", request.fingerprint(Provider.RIVYA)
    )
    assert final.state is TaskState.SUCCEEDED and final.credits_final == final.credits_reserved == 8
    assert final.polls >= 1
    target = tmp_path / "out.png"
    with target.open("wb") as sink:
        got = await rivya.fetch_result(final, sink)
    data = target.read_bytes()
    assert got.sha256 == hashlib.sha256(data).hexdigest() and got.bytes == len(data)
    assert "?" not in got.url  # signature tokens stripped
    with Image.open(target) as im:
        assert im.format == "PNG" and im.size == pixel_size("16:9", "2K")


async def test_jpg_output(rivya):
    _, final = await generate(rivya, GenerationRequest(prompt="jpg please", output_format="jpg"))
    buf = io.BytesIO()
    got = await rivya.fetch_result(final, buf)
    assert got.content_type.startswith("image/jpeg")
    assert Image.open(io.BytesIO(buf.getvalue())).format == "JPEG"


async def test_wallet_reserve_settle_and_refund(rivya, sandbox):
    start = (await rivya.balance()).amount
    await generate(rivya, GenerationRequest(prompt="ok"))
    assert (await rivya.balance()).amount == start - 8
    configure(sandbox, "rivya", faults={"task_failed": {"INFERENCE_FAILURE": 1.0}})
    _, failed = await generate(rivya, GenerationRequest(prompt="will fail"))
    assert failed.state is TaskState.FAILED and failed.error_code == "generation_failed"
    assert failed.credits_final == 0
    assert (await rivya.balance()).amount == start - 8  # refunded
    assert sum(e["amount"] for e in entries(sandbox, "rivya")) == 8


async def test_idempotent_replay_returns_same_task_and_charges_once(rivya, sandbox):
    request = GenerationRequest(prompt="only once")
    first = await rivya.submit(request)
    second = await rivya.submit(request)
    assert first.task_id == second.task_id
    reserves = [e for e in entries(sandbox, "rivya") if e["kind"] == "reserve"]
    assert len(reserves) == 1


async def test_same_key_different_body_is_a_conflict(rivya):
    await rivya.submit(GenerationRequest(prompt="one"), idempotency_key="fixed-key-1")
    with pytest.raises(IdempotencyConflictError) as info:
        await rivya.submit(GenerationRequest(prompt="two"), idempotency_key="fixed-key-1")
    assert info.value.status_code == 409 and info.value.code == "idempotency_conflict"


async def test_retried_creates_never_charge_twice(sandbox, rivya_key):
    """Connections cut after the server created the task: the client retries with the same key."""
    configure(sandbox, "rivya", faults={"drop_after_processing": 0.4, "http_5xx": 0.2})
    retry = RetryPolicy(max_attempts=12, base_delay_s=0.005, max_delay_s=0.02)
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=retry, poll=FAST_POLL) as client:
        tasks = await asyncio.gather(*(client.submit(GenerationRequest(prompt=f"p{i}")) for i in range(25)))
        assert client.counters["retries"] > 0  # faults did fire
    assert len({t.task_id for t in tasks}) == 25
    reserves = [e for e in entries(sandbox, "rivya") if e["kind"] == "reserve"]
    assert sorted(e["task_id"] for e in reserves) == sorted(t.task_id for t in tasks)


async def test_rate_limit_retry_after_is_honoured(sandbox, rivya_key):
    configure(sandbox, "rivya", rate_limit={"requests_per_s": 1, "burst": 1, "retry_after_s": 1})
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=FAST_RETRY, poll=FAST_POLL) as client:
        await client.balance()
        t0 = time.monotonic()
        await client.balance()  # bucket empty: 429 Retry-After: 1, then success
        elapsed = time.monotonic() - t0
        assert client.counters["rate_limited"] >= 1
    assert elapsed >= 0.95  # the backoff alone would have been ~10 ms


async def test_server_errors_exhaust_into_retryable(sandbox, rivya_key):
    configure(sandbox, "rivya", auth={"public_api_disabled": True})
    retry = RetryPolicy(max_attempts=3, base_delay_s=0.001)
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=retry) as client:
        with pytest.raises(RetryableError) as info:
            await client.balance()
        assert client.counters["requests"] == 3
    assert info.value.status_code == 503 and info.value.code == "public_api_disabled"


async def test_connect_errors_are_retried_then_raised():
    retry = RetryPolicy(max_attempts=3, base_delay_s=0.001)
    async with RivyaClient("http://127.0.0.1:9", "rvya_sk_nothing_listens", retry=retry) as client:
        with pytest.raises(RetryableError, match="could not connect"):
            await client.submit(GenerationRequest(prompt="p"))
        assert client.counters["requests"] == 3


@pytest.mark.parametrize(
    ("key", "config", "code", "status"),
    [
        ("", {}, "api_key_missing", 401),
        ("sk_not_rivya", {}, "api_key_invalid", 401),
        ("rvya_sk_revoked_1", {"revoked_keys": ["rvya_sk_revoked_1"]}, "api_key_revoked", 401),
        ("rvya_sk_expired_1", {"expired_keys": ["rvya_sk_expired_1"]}, "api_key_expired", 401),
        ("rvya_sk_scoped_1", {"scope_denied_keys": ["rvya_sk_scoped_1"]}, "api_scope_denied", 403),
    ],
)
async def test_auth_errors(sandbox, key, config, code, status, caplog):
    if config:
        configure(sandbox, "rivya", auth=config)
    caplog.set_level(logging.DEBUG)
    async with RivyaClient(sandbox.rivya_url, key, retry=FAST_RETRY) as client:
        with pytest.raises(AuthError) as info:
            await client.submit(GenerationRequest(prompt="p"))
        assert client.counters["requests"] == 1  # auth failures are not retried
    assert (info.value.code, info.value.status_code) == (code, status)
    assert info.value.request_id and info.value.request_id.startswith("req_")
    if key:
        assert key not in str(info.value) and key not in repr(info.value) and key not in caplog.text


async def test_insufficient_credits_reserves_nothing(rivya, sandbox):
    balance = int((await rivya.balance()).amount)
    sandbox.topup("rivya", -(balance - 7))  # leave 7 credits, one short of an image
    with pytest.raises(InsufficientFundsError) as info:
        await rivya.submit(GenerationRequest(prompt="too poor"))
    assert info.value.status_code == 402 and info.value.code == "insufficient_credits"
    assert (await rivya.balance()).amount == 7
    assert not [e for e in entries(sandbox, "rivya") if e["kind"] == "reserve"]


async def test_not_found_and_no_cancel(rivya):
    with pytest.raises(NotFoundError):
        await rivya.poll("gen_doesnotexist")
    with pytest.raises(UnsupportedOperationError):
        await rivya.cancel("gen_anything")


async def test_server_side_validation_message_is_surfaced(rivya):
    fake = ReferenceImage(url="https://elsewhere.example/x.png", file_id="file_fake")
    with pytest.raises(InvalidRequestError) as info:
        await rivya.submit(GenerationRequest(prompt="p", references=(fake,)))
    assert info.value.status_code == 400 and info.value.code == "validation_failed"
    assert info.value.message


async def test_local_validation_spends_nothing(rivya, sandbox):
    with pytest.raises(InvalidRequestError, match="10000"):
        await rivya.submit(GenerationRequest(prompt="x" * 10001))
    assert rivya.counters["requests"] == 0


async def test_upload_reference_by_magic_bytes_and_auto_aspect(rivya, tmp_path):
    disguised = tmp_path / "photo.png"  # really a JPEG
    disguised.write_bytes(png_bytes(1920, 1080, "JPEG"))
    ref = await rivya.upload_reference(disguised)
    assert ref.mime_type == "image/jpeg" and ref.file_id.startswith("file_")
    assert ref.sha256 == hashlib.sha256(disguised.read_bytes()).hexdigest()
    meta = await rivya.get_file(ref.file_id)
    assert meta.mimeType == "image/jpeg" and meta.size == disguised.stat().st_size

    _, final = await generate(rivya, GenerationRequest(prompt="like this", aspect_ratio="auto", references=(ref,)))
    buf = io.BytesIO()
    await rivya.fetch_result(final, buf)
    assert Image.open(io.BytesIO(buf.getvalue())).size == pixel_size("16:9", "1K")


async def test_upload_rejects_non_images_and_oversize_locally(rivya):
    with pytest.raises(InvalidReferenceError, match="first bytes"):
        await rivya.upload_reference(b"MZ\x90\x00" + b"\x00" * 100, name="evil.png")
    with pytest.raises(InvalidReferenceError, match="bytes"):
        await rivya.upload_reference(b"\x89PNG\r\n\x1a\n" + b"\x00" * (30 * 1024 * 1024), name="huge.png")
    assert rivya.counters["requests"] == 0


async def test_expired_urls_are_refreshed_and_cut_downloads_retried(sandbox, rivya_key):
    # each attempt succeeds 1 time in 4 here; 60 attempts make a download that never lands ~3e-8 likely
    patient = RetryPolicy(max_attempts=60, base_delay_s=0.001, max_delay_s=0.01)
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=patient, poll=FAST_POLL, seed=1) as rivya:
        _, clean = await generate(rivya, GenerationRequest(prompt="reference bytes"))
        expected = await rivya.fetch_result(clean, io.BytesIO())
        configure(sandbox, "rivya", faults={"expired_url": 0.5, "drop_download": 0.5})
        results = [await _fetch_checked(rivya, clean.task_id, expected.sha256) for _ in range(12)]
    assert {r.sha256 for r in results} == {expected.sha256}
    assert rivya.counters["expired_urls"] > 0 and rivya.counters["download_retries"] > 0


async def _fetch_checked(rivya, task_id: str, sha256: str):
    buf = io.BytesIO()
    result = await rivya.fetch_result(await rivya.poll(task_id), buf)
    assert hashlib.sha256(buf.getvalue()).hexdigest() == sha256  # no partial bytes kept
    return result


async def test_models_catalogue(rivya):
    catalogue = await rivya.models()
    pro = next(m for m in catalogue.data if m.id == "nano-banana-pro")
    assert pro.base_credits == 8 and pro.billing_type == "FIXED" and pro.max_prompt_length == 10000


async def test_key_never_in_repr_or_errors(sandbox, rivya_key, caplog):
    caplog.set_level(logging.DEBUG)
    configure(sandbox, "rivya", faults={"http_5xx": 1.0})
    async with RivyaClient(sandbox.rivya_url, rivya_key, retry=RetryPolicy(max_attempts=2, base_delay_s=0)) as c:
        assert rivya_key not in repr(c)
        with pytest.raises(RetryableError) as info:
            await c.submit(GenerationRequest(prompt="p"))
    for text in (str(info.value), repr(info.value), caplog.text):
        assert rivya_key not in text


def test_redaction_scrubs_echoed_keys():
    client = RivyaClient("http://127.0.0.1:9", "rvya_sk_supersecret")
    assert client._redact("invalid key rvya_sk_supersecret given") == "invalid key *** given"
    assert "abc.def" not in client._redact("Authorization: Bearer abc.def")
    assert "rvya_sk_other" not in client._redact("also rvya_sk_other")
