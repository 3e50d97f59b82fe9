"""Each HTTP channel keeps alive as many connections as it may have sends in flight
(`channels/registry.py`): a burst as wide as the channel's concurrency, then another, reuses
the connections of the first instead of closing some and opening them again. A gateway on the
loopback interface counts the connections it was opened; no database or broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.notification.channels.registry import build_channels
from services.notification.guard import limits_for
from shared.domain.directory import Contact
from tests.support import PATIENCE_SECONDS
from tools import contracts

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


@dataclass
class Gateway:
    """Answers POSTs once `width` of them are waiting, so every burst is `width` wide."""

    width: int
    connections: int = 0
    waiting: list[asyncio.Future[None]] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                turn = asyncio.get_running_loop().create_future()
                self.waiting.append(turn)
                if len(self.waiting) == self.width:
                    for waiter in self.waiting:
                        waiter.set_result(None)
                    self.waiting.clear()
                await turn
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def gateway_url() -> AsyncIterator[tuple[Gateway, str]]:
    width = limits_for("webhook", contracts.document_settings()).concurrency
    gateway = Gateway(width)
    server = await asyncio.start_server(gateway.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield gateway, f"http://127.0.0.1:{port}/alerts"
    finally:
        server.close()


async def test_a_second_burst_reuses_the_connections_of_the_first(
    gateway_url: tuple[Gateway, str], tmp_path: Path
) -> None:
    gateway, url = gateway_url
    # The gateway holds each answer until the burst is whole: on a busy machine that may take
    # longer than a gateway is usually given.
    settings = contracts.document_settings().model_copy(
        update={
            "alerts_file": tmp_path / "alerts.jsonl",
            "notification_send_timeout_seconds": PATIENCE_SECONDS,
        }
    )
    channel = build_channels(settings)["webhook"]
    contact = Contact(channel="webhook", address=url)
    message = {"notification_id": "n-1", "idempotency_key": "k-1", "text": "测试"}
    try:
        for _ in range(2):
            results = await asyncio.gather(
                *(channel.send(message, contact) for _ in range(gateway.width))
            )
            assert all(result.delivered for result in results), results
    finally:
        await channel.close()
    assert gateway.width > 20  # wider than httpx keeps alive unless told otherwise
    assert gateway.connections == gateway.width
