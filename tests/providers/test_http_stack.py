"""The provider clients' HTTP stack over real loopback servers: where the key goes (and where it never
goes), redirects, gzip, connection limits, TLS trusted through SSL_CERT_FILE, an injected client, and
transport failures told apart truthfully (never-sent vs maybe-sent), which is what keeps a billable
create from being sent twice."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import shutil
import subprocess
import zlib

import httpx
import pytest
from aiohttp import web
from PIL import Image

from nbpro_pipeline.models.common import TaskState
from nbpro_pipeline.models.request import GenerationRequest
from nbpro_pipeline.providers import OdiRouterClient, RetryPolicy, RivyaClient
from nbpro_pipeline.providers.base import ResultImage, TaskSnapshot
from nbpro_pipeline.providers.errors import ProviderError, RetryableError, SubmitOutcomeUnknown
from nbpro_pipeline.providers.http_stack import build_http_client, trusted_ssl_context
from nbpro_pipeline.providers.registry import Provider

from .http_servers import Origin, json_answer, make_tls

KEY = "rvya_sk_stack_test_0123456789"
ONCE = RetryPolicy(max_attempts=1)
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.002)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(buf, format="PNG")
    return buf.getvalue()


def _gzipped(body: bytes, content_type: str, encoding: str = "gzip"):
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=packed, headers={"Content-Encoding": encoding, "Content-Type": content_type})

    return handler


def _redirect(location: str):
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound(location)

    return handler


def _succeeded(url: str) -> TaskSnapshot:
    return TaskSnapshot(
        provider=Provider.RIVYA, task_id="t1", state=TaskState.SUCCEEDED, images=(ResultImage(url=url),)
    )


async def test_key_goes_to_the_api_host_only_never_to_a_download_nor_across_its_redirect():
    png = _png()
    api = Origin({("GET", "/api/v1/credits"): json_answer('{"current_credits": 7}')})
    final = Origin({("GET", "/final.png"): _gzipped(png, "image/png")})  # a CDN that gzips anyway
    async with api, final:
        cdn = Origin({("GET", "/r/1.png"): _redirect(final.url + "/final.png")})
        async with cdn, RivyaClient(api.url, KEY, retry=ONCE) as client:
            assert (await client.balance()).amount == 7
            sink = io.BytesIO()
            got = await client.fetch_result(_succeeded(cdn.url + "/r/1.png?sig=secret"), sink)
    assert sink.getvalue() == png  # decoded, and the Content-Length check read the wire bytes
    assert (got.bytes, got.sha256, got.url) == (len(png), hashlib.sha256(png).hexdigest(), cdn.url + "/r/1.png")
    assert [s.authorization for s in api.seen] == [f"Bearer {KEY}"]
    assert [(s.path, s.authorization) for s in cdn.seen + final.seen] == [("/r/1.png", None), ("/final.png", None)]


async def test_an_api_call_never_follows_a_redirect():
    elsewhere = Origin({("GET", "/api/v1/credits"): json_answer('{"current_credits": 1}')})
    async with elsewhere:
        api = Origin({("GET", "/api/v1/credits"): _redirect(elsewhere.url + "/api/v1/credits")})
        async with api, RivyaClient(api.url, KEY, retry=ONCE) as client:
            with pytest.raises(ProviderError):
                await client.balance()
    assert len(api.seen) == 1 and elsewhere.seen == []  # the key did not travel to the other origin


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_api_answer_is_read(encoding):
    api = Origin({("GET", "/api/v1/credits"): _gzipped(b'{"current_credits": 4242}', "application/json", encoding)})
    async with api, RivyaClient(api.url, KEY, retry=ONCE) as client:
        assert (await client.balance()).amount == 4242


async def test_connection_limit_holds_for_concurrent_calls():
    api = Origin({("GET", "/api/v1/credits"): json_answer('{"current_credits": 1}', delay_s=0.15)})
    async with api, RivyaClient(api.url, KEY, retry=ONCE, max_connections=3) as client:
        await asyncio.gather(*(client.balance() for _ in range(12)))
    assert len(api.seen) == 12
    assert api.max_active == 3  # parallel up to the limit, never beyond
    assert len({s.peer_port for s in api.seen}) == 3  # and the three connections were reused


async def test_an_injected_client_carries_the_calls_and_is_left_open():
    api = Origin({("GET", "/api/v1/credits"): json_answer('{"current_credits": 3}')})
    hooked: list[str] = []

    async def hook(request: httpx.Request) -> None:
        hooked.append(request.url.path)

    async with api, httpx.AsyncClient(event_hooks={"request": [hook]}) as http:
        async with RivyaClient(api.url, KEY, retry=ONCE, http_client=http) as client:
            assert (await client.balance()).amount == 3
        assert not http.is_closed  # the caller owns it
        assert (await http.get(api.url + "/api/v1/credits")).json() == {"current_credits": 3}
    assert hooked == ["/api/v1/credits", "/api/v1/credits"]
    assert [s.authorization for s in api.seen] == [f"Bearer {KEY}", None]  # the key is per call, not the client's


async def test_tls_origin_is_trusted_through_ssl_cert_file(tmp_path, monkeypatch):
    tls = make_tls(tmp_path)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    api = Origin({("GET", "/api/v1/credits"): json_answer('{"current_credits": 9}')}, ssl_context=tls.server_context)
    async with api:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        async with RivyaClient(api.url, KEY, retry=ONCE) as untrusting:
            with pytest.raises(RetryableError, match="could not connect"):
                await untrusting.balance()  # a CA nobody told the client about
        monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
        async with RivyaClient(api.url, KEY, retry=ONCE) as client:
            assert (await client.balance()).amount == 9
    assert api.url.startswith("https://") and [s.authorization for s in api.seen] == [f"Bearer {KEY}"]


def test_the_shared_ssl_context_follows_the_trust_store(tmp_path, monkeypatch):
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    default = trusted_ssl_context()
    assert trusted_ssl_context() is default  # made once, not per client
    first = make_tls(tmp_path).ca_file
    monkeypatch.setenv("SSL_CERT_FILE", str(first))
    own = trusted_ssl_context()
    assert own is not default and len(own.get_ca_certs()) == 1
    (tmp_path / "b").mkdir()
    with first.open("ab") as pem:  # the same path, a second CA added
        pem.write(make_tls(tmp_path / "b").ca_file.read_bytes())
    assert len(trusted_ssl_context().get_ca_certs()) == 2  # read again


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to hash the CA directory")
async def test_tls_origin_is_trusted_through_ssl_cert_dir(tmp_path, monkeypatch):
    tls = make_tls(tmp_path)
    certs = tmp_path / "certs"
    certs.mkdir()
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(tls.ca_file)], capture_output=True, text=True, check=True
    ).stdout.strip()
    (certs / f"{subject_hash}.0").write_bytes(tls.ca_file.read_bytes())
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(certs))
    api = Origin({("GET", "/api/v1/credits"): json_answer('{"current_credits": 8}')}, ssl_context=tls.server_context)
    async with api, RivyaClient(api.url, KEY, retry=ONCE) as client:
        assert (await client.balance()).amount == 8


# -- transport failures, from a server scripted byte by byte ---------------------------------------
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n"
CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
CUT = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
HANG_UP = b""  # read the request, close without a word


async def _scripted(answers: list[bytes]):
    """Answers each request (head read to the blank line) with the next scripted bytes, closing after
    HANG_UP, CUT or a close-delimited answer. Returns the server, its URL and the requests it read."""
    state = {"requests": 0, "answers": list(answers)}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")), 0
                )
                await reader.readexactly(length)
                state["requests"] += 1
                answer = state["answers"].pop(0)
                if answer == HANG_UP:
                    break
                writer.write(answer)
                await writer.drain()
                if answer in (CUT, CLOSE_DELIMITED):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", state


async def test_body_framings_and_failures_map_to_what_the_retry_logic_reads():
    server, url, state = await _scripted([CHUNKED, CLOSE_DELIMITED, CUT, HANG_UP])
    async with server, build_http_client() as http:
        assert (await http.get(url)).text == "hello world"
        assert (await http.get(url)).text == "until the end"
        with pytest.raises(httpx.ReadError):  # the answer began: the request arrived
            await http.get(url)
        with pytest.raises(httpx.RemoteProtocolError):  # read, then silence: it arrived too
            await http.get(url)
        server.close()
        await server.wait_closed()
        with pytest.raises(httpx.ConnectError):  # nobody listening: provably never sent
            await http.get(url)
    assert state["requests"] == 5  # aiohttp sends an idempotent GET once more after a hang-up (never a POST)


async def test_a_create_the_server_read_and_hung_up_on_is_never_sent_again():
    """httpx-aiohttp alone reports this as ConnectTimeout ("never left") and the create would be
    repeated and billed twice; the stack re-maps it, so the client says the outcome is unknown."""
    server, url, state = await _scripted([HANG_UP] * 5)
    async with server, OdiRouterClient(url + "/model", "odr_k", retry=FAST) as client:
        with pytest.raises(SubmitOutcomeUnknown):
            await client.submit(GenerationRequest(prompt="a lighthouse"))
    assert state["requests"] == 1


async def test_a_cookie_a_server_sets_is_sent_back_and_answers_without_one_leave_the_jar_alone():
    """The jar skips responses without Set-Cookie (a CPU saving); one that sets a cookie still counts."""
    sent: list[str | None] = []

    async def sets(request: web.Request) -> web.Response:
        response = web.json_response({"ok": True})
        response.set_cookie("lb", "node-7")
        return response

    async def echoes(request: web.Request) -> web.Response:
        sent.append(request.headers.get("Cookie"))
        return web.json_response({"ok": True})

    api = Origin({("GET", "/plain"): echoes, ("GET", "/sets"): sets})
    async with api, build_http_client() as http:
        await http.get(api.url + "/plain")
        assert len(http.cookies.jar) == 0
        await http.get(api.url + "/sets")
        await http.get(api.url + "/plain")
    assert sent == [None, "lb=node-7"]
