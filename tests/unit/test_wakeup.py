"""A worker's wait for NOTIFY (`shared.pgnotify.Wakeup`) ends when its task is cancelled, even
when the cancellation comes in the same turn of the loop as a wake: a worker stopped then must
stop, not go on to its next wait (a relay's next wait is its whole lease)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from shared.pgnotify import Listener, Wakeup


class AlreadyListening:
    """A listener whose channel is listened to already: `listen` asks nothing of a database."""

    async def listen(self, _: Any) -> None:
        return None


async def turns_until(condition: Any) -> None:
    """Let the loop turn, one turn at a time, until `condition` holds (a bounded number)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


@pytest.mark.parametrize("turns_after_the_wake", [0, 1, 2, 3])
async def test_a_wait_woken_and_cancelled_in_one_turn_ends_cancelled(
    turns_after_the_wake: int,
) -> None:
    wakeup = Wakeup(cast(Listener, AlreadyListening()), "outbox")
    waiting = asyncio.create_task(wakeup.wait(3600.0))
    event = wakeup._event
    await turns_until(lambda: bool(event._waiters))  # it waits on its event
    wakeup.wake()
    for _ in range(turns_after_the_wake):
        await asyncio.sleep(0)
    if not waiting.cancel():  # the wait had ended already, woken: nothing else to check
        assert waiting.result() is True
        return
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_wait_woken_returns_true_and_one_that_times_out_false() -> None:
    wakeup = Wakeup(cast(Listener, AlreadyListening()), "outbox")
    wakeup.wake()
    assert await wakeup.wait(3600.0) is True
    assert await wakeup.wait(0.01) is False
