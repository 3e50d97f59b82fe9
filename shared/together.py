"""Work handed in one piece at a time and done for many pieces at once: group commit.

Requests that arrive while a statement is under way wait for it anyway; `Together` has them
wait in a queue instead, and writes everything queued with the next statement (at most `most`
pieces), so that a burst costs a few round trips and commits, not one of each per piece, and no
piece waits for more than the statement before its own. A piece that comes alone is written at
once, alone: at low rates nothing waits for company.

Each piece's caller gets its own outcome: the writer answers a result or an exception for each
piece, in the order given. A caller cancelled while its piece still waits takes it out of the
queue (nothing is written for it); once taken, the piece's statement runs to its end whatever
becomes of the caller, as a statement already sent would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Piece = TypeVar("Piece")
Result = TypeVar("Result")
# Writes the pieces, answering for each, in their order, its result or the exception it met.
WriteMany = Callable[[list[Piece]], Awaitable[Sequence[Result | BaseException]]]


class Together(Generic[Piece, Result]):
    """Pieces written by one writer task, all that wait at once in one call of `write`."""

    def __init__(self, write: WriteMany[Piece, Result], *, most: int) -> None:
        self._write = write
        self._most = most
        self._waiting: list[tuple[Piece, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, piece: Piece) -> Result:
        outcome: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((piece, outcome))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting(), name="together")
        try:
            return await outcome
        except asyncio.CancelledError:
            # Not yet taken: nothing is written for a caller who left.
            self._waiting = [waiting for waiting in self._waiting if waiting[1] is not outcome]
            raise

    async def _write_waiting(self) -> None:
        # The callers that arrived in the same moment are resumed one after another: let them
        # all join before the first statement.
        await asyncio.sleep(0)
        while self._waiting:
            batch, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
            pieces = [piece for piece, _ in batch]
            try:
                outcomes: Sequence[Result | BaseException] = await self._write(pieces)
            except Exception as error:  # the writer's own failure: each caller is told
                outcomes = [error] * len(pieces)
            for (_, outcome), answer in zip(batch, outcomes, strict=True):
                if outcome.done():  # its caller left while the statement ran
                    continue
                if isinstance(answer, BaseException):
                    outcome.set_exception(answer)
                else:
                    outcome.set_result(answer)
