"""The load generator's HTTP/1.1 client against a real socket server: keep-alive reuse, the
ways an answer's end is told, and a failed exchange reported as no answer, never reused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from bench.http1 import Client, HttpError, parse_head, request_bytes

Answering = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(answer: Answering) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server on a free port answering each request with `answer`; its URL and the request
    heads it read, one list entry per connection accepted (heads joined)."""
    connections: list[bytes] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(b"")
        index = len(connections) - 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                connections[index] += head
                await answer(reader, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield f"http://127.0.0.1:{port}", connections


async def fixed(writer: asyncio.StreamWriter, status: str, body: bytes, *extra: str) -> None:
    head = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *extra]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()


async def created(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await fixed(writer, "201 Created", b'{"id": "a"}', "content-type: application/json")


def test_a_request_is_written_whole_with_its_length_and_host() -> None:
    written = request_bytes("POST", "/v1/incidents", "h:1", {"Idempotency-Key": "k"}, b"{}")
    assert written == (
        b"POST /v1/incidents HTTP/1.1\r\nHost: h:1\r\nContent-Length: 2\r\n"
        b"Idempotency-Key: k\r\n\r\n{}"
    )


def test_a_head_gives_its_status_and_headers_by_lower_case_name() -> None:
    status, headers = parse_head(b"HTTP/1.1 422 Unprocessable\r\nContent-Type: x\r\n\r\n")
    assert (status, headers) == (422, {"content-type": "x"})
    with pytest.raises(HttpError):
        parse_head(b"SSH-2.0-OpenSSH\r\n\r\n")


async def test_connections_are_kept_and_reused_up_to_the_limit() -> None:
    async with server(created) as (url, connections), Client(url, 2, timeout=30) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/incidents", b"{}", {"X-N": str(n)}) for n in range(10))
        )
        assert {(a.status_code, a.json()["id"]) for a in answers} == {(201, "a")}
        # Never more connections than allowed; all ten requests went over them.
        assert 1 <= len(connections) <= 2
        assert sum(heads.count(b"POST /v1/incidents") for heads in connections) == 10


async def test_an_answer_in_chunks_is_read_whole() -> None:
    async def chunked(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b'3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n'
        )
        await writer.drain()

    async with server(chunked) as (url, connections), Client(url, 1, timeout=30) as client:
        first = await client.post("/x", b"{}", {})
        second = await client.post("/x", b"{}", {})
        assert first.json() == second.json() == {"a": 1}
        assert len(connections) == 1


async def test_a_connection_the_server_closes_is_not_used_again() -> None:
    async def closing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await fixed(writer, "503 Service Unavailable", b"", "connection: close")
        writer.close()

    async with server(closing) as (url, connections), Client(url, 1, timeout=30) as client:
        for _ in range(3):
            assert (await client.post("/x", b"{}", {})).status_code == 503
        assert len(connections) == 3


async def test_no_answer_is_an_error_naming_its_cause_and_the_next_request_connects_anew() -> None:
    answered = 0

    async def hangs_up_once(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        answered += 1
        if answered == 1:
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 10\r\n\r\n{}")
            writer.close()  # eight bytes short
            return
        await created(_, writer)

    async with server(hangs_up_once) as (url, connections), Client(url, 1, timeout=30) as client:
        with pytest.raises(HttpError, match="IncompleteReadError"):
            await client.post("/x", b"{}", {})
        assert (await client.post("/x", b"{}", {})).status_code == 201
        assert len(connections) == 2


async def test_an_answer_that_never_comes_is_a_timeout() -> None:
    never = asyncio.Event()

    async def silent(_: asyncio.StreamReader, __: asyncio.StreamWriter) -> None:
        await never.wait()

    async with server(silent) as (url, _), Client(url, 1, timeout=0.2) as client:
        with pytest.raises(HttpError, match="TimeoutError"):
            await client.post("/x", b"{}", {})
        never.set()


async def test_a_connection_idle_past_the_servers_keep_alive_is_not_used_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between the bench's steps the generator's connections sit idle for minutes, and the
    server closes them at its keep-alive: each would fail the next report sent on it."""
    async with server(created) as (url, connections), Client(url, 2, timeout=30) as client:
        await asyncio.gather(*(client.post("/x", b"{}", {}) for _ in range(2)))
        assert len(connections) == 2
        monkeypatch.setattr("bench.http1.IDLE_SECONDS", 0.0)
        assert (await client.post("/x", b"{}", {})).status_code == 201
        assert len(connections) == 3  # both idle ones dropped, one new one opened
        monkeypatch.setattr("bench.http1.IDLE_SECONDS", 3600.0)
        assert (await client.post("/x", b"{}", {})).status_code == 201
        assert len(connections) == 3  # a connection idle for less is used again
