"""uvicorn's server, ticking once a second instead of ten times, its heap settled once started.

uvicorn wakes its event loop every 100 ms for housekeeping: the Date header (which changes once a
second), a stop asked by a signal, a request limit. In an idle service that tick was most of the
loop's turns, and so of its CPU (docs/performance.md). This server does the same housekeeping
once a second, and a stop signal ends the wait at once, so shutting down is as quick as before.

Once started, a service's heap is mostly what it will keep for its life: modules, the app,
pydantic's and SQLAlchemy's compiled forms. Python's cycle collector walked all of it again
whenever the objects a burst of requests held for a moment had piled up into the oldest
generation, and collected the youngest every 700 objects, so that much of what a request holds
for a few milliseconds got promoted and walked: a third of intake's CPU flat out
(docs/performance.md, item 83). `settle_heap` leaves what startup built out of every later
collection and lets the youngest generation grow further between collections.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE

# uvicorn's on_tick does its once-a-second work when the tick counter is a multiple of this.
UVICORN_TICKS_PER_SECOND = 10
# Objects the youngest generation takes before the cycle collector runs (Python's default 700).
# A request's objects live a few milliseconds; collected every 700, many of them were promoted
# and walked again in the older generations. Measured with the freeze: a third off intake's CPU
# a report flat out; 50,000 did no better (docs/performance.md, item 83).
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_heap(young_collection_threshold: int) -> None:
    """Collect once, then keep every object alive now out of all later collections (they stay
    alive and are never walked again), and collect the youngest generation every
    `young_collection_threshold` objects. Cycles among objects made later are still collected."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(young_collection_threshold, middle, oldest)


class QuietServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        tick_seconds: float = 1.0,
        young_collection_threshold: int | None = None,
    ) -> None:
        """`young_collection_threshold`: settle the heap (`settle_heap`) once started; None
        leaves the process's collector as it is (a server inside another program)."""
        super().__init__(config)
        self.tick_seconds = tick_seconds
        self.young_collection_threshold = young_collection_threshold
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_asked: asyncio.Event | None = None

    async def main_loop(self) -> None:
        # Called once the app's startup (its lifespan) is done: what it built is kept for good.
        if self.young_collection_threshold is not None:
            settle_heap(self.young_collection_threshold)
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
    server = QuietServer(config, young_collection_threshold=YOUNG_COLLECTION_THRESHOLD)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
