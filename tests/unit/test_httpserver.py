"""The services' uvicorn server (shared/httpserver.py): housekeeping once a second, and a stop
asked by a signal seen at once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shared.httpserver import QuietServer
from tools.localinfra import free_port

PATIENCE_SECONDS = 30
AN_HOUR = 3600.0


def answering_app() -> Starlette:
    return Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])


@pytest.fixture
def harmless_sigusr1() -> Iterator[None]:
    """uvicorn raises the signals it caught again once it has stopped: SIGUSR1 then does
    nothing, where SIGTERM would end the test run."""
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    yield
    signal.signal(signal.SIGUSR1, previous)


async def started(server: QuietServer) -> asyncio.Task[None]:
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(PATIENCE_SECONDS):
        while not server.started:
            await asyncio.sleep(0.01)
    return serving


@pytest.mark.usefixtures("harmless_sigusr1")
async def test_a_stop_signal_ends_the_wait_between_ticks_at_once() -> None:
    """With an hour between ticks, a server that only looked at `should_exit` when it ticked
    would run on for the hour."""
    port = free_port()
    config = uvicorn.Config(answering_app(), port=port, log_config=None, lifespan="off")
    server = QuietServer(config, tick_seconds=AN_HOUR)
    serving = await started(server)
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://127.0.0.1:{port}/")
    assert answer.text == "ok"
    assert "date" in answer.headers, "the once-a-second housekeeping ran"
    server.handle_exit(signal.SIGUSR1, None)
    async with asyncio.timeout(PATIENCE_SECONDS):
        await serving
    assert server.should_exit


async def test_a_stop_asked_from_within_the_process_is_seen_when_woken() -> None:
    port = free_port()
    config = uvicorn.Config(answering_app(), port=port, log_config=None, lifespan="off")
    server = QuietServer(config, tick_seconds=AN_HOUR)
    serving = await started(server)
    server.should_exit = True
    server.wake()
    async with asyncio.timeout(PATIENCE_SECONDS):
        await serving
