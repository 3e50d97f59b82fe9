"""uvicorn's server, ticking once a second instead of ten times.

uvicorn wakes its event loop every 100 ms for housekeeping: the Date header (which changes once a
second), a stop asked by a signal, a request limit. In an idle service that tick was most of the
loop's turns, and so of its CPU (docs/performance.md). This server does the same housekeeping
once a second, and a stop signal ends the wait at once, so shutting down is as quick as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

# uvicorn's on_tick does its once-a-second work when the tick counter is a multiple of this.
UVICORN_TICKS_PER_SECOND = 10


class QuietServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, tick_seconds: float = 1.0) -> None:
        super().__init__(config)
        self.tick_seconds = tick_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_asked: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_asked = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            # Every turn is a whole second's worth of uvicorn's ticks: its per-second work runs.
            counter = (counter + UVICORN_TICKS_PER_SECOND) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_asked.wait(), self.tick_seconds)
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self.wake()

    def wake(self) -> None:
        """End the current wait, so that a stop asked (`should_exit`) is seen now; safe from a
        signal handler and from other threads."""
        if self._loop is not None and self._stop_asked is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing waits
                self._loop.call_soon_threadsafe(self._stop_asked.set)


def serve(config: uvicorn.Config) -> None:
    """Run `config` as `uvicorn.run` would for one worker without reload; exit with uvicorn's
    startup-failure code when the server never started (the app failed to load, say)."""
    server = QuietServer(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
