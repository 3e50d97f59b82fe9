"""The services' uvicorn server (shared/httpserver.py): housekeeping once a second, a stop
asked by a signal seen at once, and the heap its startup built left out of later collections."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shared.httpserver import YOUNG_COLLECTION_THRESHOLD, QuietServer, serve
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


class Kept:
    """An object of the app's startup, to be found (or not) among the collector's objects."""


def tracked_by_the_collector(kept: object) -> bool:
    return any(candidate is kept for candidate in gc.get_objects())


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """The server settles this test process's own heap: put the collector back as it was."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector_restored")
async def test_once_started_what_the_startup_built_is_never_walked_again() -> None:
    built_at_startup: list[Kept] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        built_at_startup.append(Kept())
        assert tracked_by_the_collector(built_at_startup[0])
        yield

    app = Starlette(routes=answering_app().routes, lifespan=lifespan)
    port = free_port()
    config = uvicorn.Config(app, port=port, log_config=None, lifespan="on")
    server = QuietServer(config, tick_seconds=AN_HOUR, young_collection_threshold=12_345)
    serving = await started(server)
    async with asyncio.timeout(PATIENCE_SECONDS):
        while gc.get_threshold()[0] != 12_345:
            await asyncio.sleep(0.01)
    assert not tracked_by_the_collector(built_at_startup[0])
    assert gc.get_freeze_count() > 0
    made_after = Kept()
    assert tracked_by_the_collector(made_after), "what requests make is collected as before"
    server.should_exit = True
    server.wake()
    async with asyncio.timeout(PATIENCE_SECONDS):
        await serving


async def test_a_server_inside_another_program_leaves_its_collector_alone() -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    port = free_port()
    config = uvicorn.Config(answering_app(), port=port, log_config=None, lifespan="off")
    server = QuietServer(config, tick_seconds=AN_HOUR)
    serving = await started(server)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
    assert gc.get_threshold() == threshold and gc.get_freeze_count() == frozen
    server.should_exit = True
    server.wake()
    async with asyncio.timeout(PATIENCE_SECONDS):
        await serving


def test_the_services_are_served_with_their_heap_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[QuietServer] = []

    def run(self: QuietServer) -> None:
        made.append(self)
        self.started = True

    monkeypatch.setattr(QuietServer, "run", run)
    serve(uvicorn.Config(answering_app()))
    [server] = made
    assert server.young_collection_threshold == YOUNG_COLLECTION_THRESHOLD > 700
