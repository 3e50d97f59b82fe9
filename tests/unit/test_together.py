"""`shared.together.Together`: pieces that wait while a write is under way go in the next write,
each caller gets its own outcome, and a caller who leaves before its piece is taken has nothing
written. Steps are driven by events, never by the clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shared.together import Together


class Writer:
    """Writes by doubling, records each call's pieces; a call can be held open until released."""

    def __init__(self, *, held: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        if not held:
            self.release.set()
        self.entered = asyncio.Event()

    async def under_way(self, together: Together[int, int], piece: int) -> asyncio.Task[int]:
        """`piece` handed in, and its write begun (held until released)."""
        task = asyncio.create_task(together(piece))
        await self.entered.wait()
        return task

    async def __call__(self, pieces: list[int]) -> Sequence[int | BaseException]:
        self.calls.append(list(pieces))
        self.entered.set()
        await self.release.wait()
        return [ValueError(f"no {piece}") if piece < 0 else piece * 2 for piece in pieces]


async def test_a_piece_alone_is_written_at_once_alone() -> None:
    writer = Writer()
    together = Together(writer, most=8)
    assert await together(3) == 6
    assert writer.calls == [[3]]


async def test_pieces_that_arrive_together_are_one_write() -> None:
    writer = Writer()
    together = Together(writer, most=8)
    assert await asyncio.gather(*(together(n) for n in range(5))) == [0, 2, 4, 6, 8]
    assert writer.calls == [[0, 1, 2, 3, 4]]


async def test_pieces_that_wait_during_a_write_go_in_the_next_at_most_most() -> None:
    writer = Writer(held=True)
    together = Together(writer, most=3)
    first = await writer.under_way(together, 0)
    waiting = [asyncio.create_task(together(n)) for n in range(1, 6)]
    await asyncio.sleep(0)
    writer.release.set()
    assert await first == 0
    assert [await task for task in waiting] == [2, 4, 6, 8, 10]
    assert writer.calls == [[0], [1, 2, 3], [4, 5]]


async def test_each_caller_gets_its_own_outcome() -> None:
    together = Together(Writer(), most=8)
    outcomes = await asyncio.gather(together(1), together(-1), together(2), return_exceptions=True)
    assert outcomes[0] == 2 and outcomes[2] == 4
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "no -1"


async def test_a_failing_write_fails_every_caller_of_it_and_the_next_write_goes_on() -> None:
    calls: list[list[int]] = []

    async def failing_once(pieces: list[int]) -> Sequence[int | BaseException]:
        calls.append(pieces)
        if len(calls) == 1:
            raise ConnectionError("database away")
        return pieces

    together = Together(failing_once, most=8)
    outcomes = await asyncio.gather(together(1), together(2), return_exceptions=True)
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    assert await together(3) == 3


async def test_a_caller_who_leaves_before_its_piece_is_taken_has_nothing_written() -> None:
    writer = Writer(held=True)
    together = Together(writer, most=8)
    first = await writer.under_way(together, 1)
    leaving = asyncio.create_task(together(2))
    staying = asyncio.create_task(together(3))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    writer.release.set()
    assert (await first, await staying) == (2, 6)
    assert writer.calls == [[1], [3]]


async def test_a_caller_who_leaves_once_its_piece_is_taken_does_not_stop_the_write() -> None:
    writer = Writer(held=True)
    together = Together(writer, most=8)
    leaving = asyncio.create_task(together(1))
    staying = asyncio.create_task(together(2))
    await writer.entered.wait()
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    writer.release.set()
    assert await staying == 4
    assert writer.calls == [[1, 2]]
