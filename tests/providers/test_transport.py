"""The lean transport over real loopback sockets: keep-alive reuse, the body framings providers use,
and failures mapped onto the httpx errors the retry logic reads (never-sent vs maybe-sent).

The sandbox only ever answers with Content-Length; chunked and close-delimited bodies come from a
tiny scripted server here."""

import asyncio

import httpx
import pytest

from nbpro_pipeline.providers.transport import LeanAsyncTransport

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n"
CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
CUT = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"


async def _server(answers: list[bytes]):
    """Answers each request (head read to the blank line) with the next scripted bytes; an answer
    ending the script closes the connection. Returns the server, its URL and the connection count."""
    state = {"connections": 0, "answers": list(answers)}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["connections"] += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                answer = state["answers"].pop(0)
                if answer == b"":
                    break  # hang up without answering
                writer.write(answer)
                await writer.drain()
                if b"Connection: close" in answer or answer is CUT:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", state


async def test_keep_alive_reuse_and_each_body_framing():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server, url, state = await _server([ok, ok, CHUNKED, CLOSE_DELIMITED, ok])
    async with server, httpx.AsyncClient(transport=LeanAsyncTransport()) as client:
        assert (await client.get(url + "/a")).text == "ok"
        assert (await client.get(url + "/b")).text == "ok"
        assert state["connections"] == 1  # the second request reused the first connection
        assert (await client.get(url + "/c")).text == "hello world"
        assert (await client.get(url + "/d")).text == "until the end"
        assert (await client.get(url + "/e")).text == "ok"
        assert state["connections"] == 2  # the close-delimited answer used up its connection


async def test_failures_map_to_never_sent_or_maybe_sent_errors():
    server, url, _ = await _server([b"", CUT])
    async with server, httpx.AsyncClient(transport=LeanAsyncTransport()) as client:
        with pytest.raises(httpx.RemoteProtocolError):  # sent, no answer: the outcome is unknown
            await client.post(url + "/create", json={"x": 1})
        with pytest.raises(httpx.RemoteProtocolError):  # body shorter than its Content-Length
            await client.get(url + "/image")
    with pytest.raises(httpx.ConnectError):  # nothing listens any more: provably never sent
        async with httpx.AsyncClient(transport=LeanAsyncTransport()) as client:
            await client.get(url + "/gone")


async def test_pool_limit_queues_requests_instead_of_opening_more_connections():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    server, url, state = await _server([ok] * 8)
    async with server, httpx.AsyncClient(transport=LeanAsyncTransport(max_connections=2)) as client:
        answers = await asyncio.gather(*(client.get(f"{url}/{i}") for i in range(8)))
    assert [a.text for a in answers] == ["ok"] * 8
    assert state["connections"] <= 2
