"""A test that hangs fails, with where every task waits, and the run goes on.

Every wait in a test has its own bound (`tests.support.PATIENCE_SECONDS`), but a hang can sit
where no wait is bounded: a task that never ends after it was cancelled, a connection that
never closes. Without this a hang holds the whole run until CI gives up on it, and says nothing
about where it was.

- An async test that runs past `TEST_LIMIT_SECONDS` has where every task of its event loop waits
  printed, then is cancelled and fails; the next test runs.
- Anything still stuck `LAST_RESORT_SECONDS` later (a test that its cancel does not end, a call
  that blocks the loop, a fixture) has every thread's stack and every task printed, and the run
  ends with exit status 1.
- `kill -USR1 <pid of pytest>` prints where every task waits, at any moment.
"""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import inspect
import linecache
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

# Ten times the slowest test on a busy machine (a fault drill, about a minute).
TEST_LIMIT_SECONDS = float(os.environ.get("TEST_LIMIT_SECONDS", "600"))
# How long past its limit a test (its setup, call and teardown) may take before the run ends.
LAST_RESORT_SECONDS = float(os.environ.get("TEST_LAST_RESORT_SECONDS", "120"))


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """The task's coroutines, outermost first, down to what the innermost awaits: a task's own
    stack shows only its outermost frame while it is suspended."""
    lines = [repr(task)]
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = first_attribute(awaited, ("cr_frame", "gi_frame", "ag_frame"))
        if frame is None:
            lines.append(f"    awaits {awaited!r}")
            break
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_qualname}')
        source = linecache.getline(code.co_filename, frame.f_lineno).strip()
        if source:
            lines.append(f"    {source}")
        awaited = first_attribute(awaited, ("cr_await", "gi_yieldfrom", "ag_await"))
    return lines


def first_attribute(thing: object, names: tuple[str, ...]) -> Any:
    """The first of `names` that `thing` has and is not None: a coroutine, a generator and an
    async generator name their frame and what they await differently."""
    return next(
        (getattr(thing, name) for name in names if getattr(thing, name, None) is not None), None
    )


def print_every_task(
    capture: Any, heading: str, loop: asyncio.AbstractEventLoop | None = None
) -> None:
    """Past pytest's capture, so that it is seen whatever becomes of the test."""
    with capture.global_and_fixture_disabled():
        print(heading, file=sys.stderr)
        try:
            tasks = asyncio.all_tasks(loop)
        except RuntimeError:  # no loop running at this moment
            tasks = set()
        for task in tasks:
            print("\n".join(await_chain(task)), file=sys.stderr)
        if not tasks:
            print("no task of an event loop is running", file=sys.stderr)
        sys.stderr.flush()


class Watch:
    """The test running now: its name, and its event loop once it has one."""

    def __init__(self, capture: Any, name: str) -> None:
        self.capture = capture
        self.name = name
        self.started = time.monotonic()
        self.loop: asyncio.AbstractEventLoop | None = None


class LastResort(threading.Thread):
    """One thread for the session, looking every second at how long the test running now has
    run (a thread a test would cost each test a few milliseconds to start)."""

    def __init__(self) -> None:
        super().__init__(name="last resort", daemon=True)
        self.watching: Watch | None = None

    def run(self) -> None:
        seconds = TEST_LIMIT_SECONDS + LAST_RESORT_SECONDS
        while True:
            time.sleep(1.0)
            watch = self.watching
            if watch is not None and time.monotonic() - watch.started > seconds:
                end_the_run(watch, seconds)


def end_the_run(watch: Watch, seconds: float) -> None:
    with watch.capture.global_and_fixture_disabled():
        print(
            f"\n{watch.name} is still running after {seconds:g}s: the run ends here."
            " Every thread's stack:",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    if watch.loop is not None:
        print_every_task(watch.capture, "Every task of its event loop:", watch.loop)
    os._exit(1)


LAST_RESORT = pytest.StashKey[LastResort]()


def pytest_configure(config: pytest.Config) -> None:
    capture = config.pluginmanager.getplugin("capturemanager")

    def print_tasks(*_: object) -> None:
        print_every_task(capture, "where every task waits, on SIGUSR1:")

    signal.signal(signal.SIGUSR1, print_tasks)
    config.stash[LAST_RESORT] = LastResort()
    config.stash[LAST_RESORT].start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    # Setup, call and teardown together: a session's systems start in its first test's setup.
    capture = item.config.pluginmanager.getplugin("capturemanager")
    last_resort = item.config.stash[LAST_RESORT]
    last_resort.watching = item.stash[WATCH] = Watch(capture, item.nodeid)
    try:
        return (yield)
    finally:
        last_resort.watching = None


WATCH = pytest.StashKey[Watch]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    test = getattr(item, "obj", None)
    if not isinstance(item, pytest.Function) or not inspect.iscoroutinefunction(test):
        return (yield)
    item.obj = within_limit(test, item.stash[WATCH])
    try:
        return (yield)
    finally:
        item.obj = test


def within_limit(
    test: Callable[..., Coroutine[Any, Any, Any]], watch: Watch
) -> Callable[..., Coroutine[Any, Any, Any]]:
    """`test`, cancelled and failed once it has run for `TEST_LIMIT_SECONDS`."""

    @functools.wraps(test)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        running = asyncio.current_task()
        assert running is not None
        watch.loop = asyncio.get_running_loop()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            print_every_task(
                watch.capture,
                f"\n{watch.name} ran past {TEST_LIMIT_SECONDS:g}s; where every task waits:",
            )
            running.cancel()

        timer = watch.loop.call_later(TEST_LIMIT_SECONDS, expire)
        try:
            return await test(*args, **kwargs)
        except asyncio.CancelledError:
            if not expired:
                raise
            running.uncancel()
            pytest.fail(
                f"ran past {TEST_LIMIT_SECONDS:g}s and was cancelled: where every task waited"
                " at that moment is printed above",
                pytrace=False,
            )
        finally:
            timer.cancel()

    return guarded
