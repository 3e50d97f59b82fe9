"""How the deadline worker sleeps between passes (services/escalation/deadlines.py): a NOTIFY
of a new deadline only moves its time to wake; a pass runs when the time comes, or at once
when a look after a NOTIFY finds something due; the NOTIFYs that come during the pause after
one are answered by the same look."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

from services.escalation.deadlines import BUSY_RETRY_SECONDS, DeadlineWorker


class ScriptedWakeup:
    """Answers each wait with the next scripted outcome: True woken, False timed out."""

    def __init__(self, outcomes: list[bool]) -> None:
        self.outcomes = deque(outcomes)
        self.waits: list[float] = []
        self.pending = False  # a wake not yet waited for

    async def wait(self, poll_seconds: float) -> bool:
        self.waits.append(poll_seconds)
        if self.pending:
            self.pending = False
            return True
        return self.outcomes.popleft()

    def wake(self) -> None:
        self.pending = True

    def clear(self) -> None:
        self.pending = False


async def no_pause() -> None:
    return None


def worker(
    wakeup: ScriptedWakeup,
    next_deadlines: list[float],
    pause: Callable[[], Awaitable[None]] = no_pause,
) -> DeadlineWorker:
    created = DeadlineWorker(
        cast(Any, None),
        cast(Any, None),
        cast(Any, wakeup),
        poll_interval=30,
        delay=cast(Any, None),
        notified_pause=pause,
    )
    looks = deque(next_deadlines)

    async def seconds_to_next_deadline() -> float:
        return looks.popleft()

    created.seconds_to_next_deadline = seconds_to_next_deadline  # type: ignore[method-assign]
    return created


async def test_a_notify_of_a_later_deadline_only_moves_the_time_to_wake() -> None:
    wakeup = ScriptedWakeup([True, True, False])
    await worker(wakeup, [30, 12, 8]).sleep_until_next_deadline()
    assert wakeup.waits == [30, 12, 8]  # three looks, one pass after the last sleep
    assert not wakeup.outcomes


async def test_a_notify_that_finds_a_deadline_due_ends_the_sleep_at_once() -> None:
    wakeup = ScriptedWakeup([True, True])
    await worker(wakeup, [30, BUSY_RETRY_SECONDS]).sleep_until_next_deadline()
    assert wakeup.waits == [30]


async def test_the_notifies_of_the_pause_after_one_are_answered_by_one_look() -> None:
    """A flood of reports: twenty more duties NOTIFY while the worker pauses after the first
    one. One look answers them all; the sleep goes on to the deadline it found."""
    wakeup = ScriptedWakeup([True, False])

    async def twenty_more_duties() -> None:
        for _ in range(20):
            wakeup.wake()

    await worker(wakeup, [30, 12], twenty_more_duties).sleep_until_next_deadline()
    assert wakeup.waits == [30, 12]  # two looks: before the sleep, after the pause
    assert not wakeup.outcomes
