"""Wake a worker on PostgreSQL NOTIFY, with a poll interval as the fallback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from shared.staging import staged


class Wakeup:
    """LISTENs on one channel; `wait` returns on a notification or after `poll_seconds`.

    The listening connection is reopened after it drops (a database restart): its loss wakes
    the waiter, which listens again and makes a pass for what it may have missed. So the poll
    is only a fallback, and may be long: an idle worker then sleeps.
    """

    def __init__(
        self, dsn: str, channel: str, server_settings: Mapping[str, str] | None = None
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._server_settings = dict(server_settings or {})
        self._event = asyncio.Event()
        self._connection: asyncpg.Connection | None = None

    async def wait(self, poll_seconds: float) -> bool:
        """Whether it was woken (a notification, or the connection lost or new) before
        `poll_seconds` passed."""
        await self._ensure_listening()
        woken = self._event.is_set()
        if not woken:
            try:
                await asyncio.wait_for(self._event.wait(), poll_seconds)
                woken = True
            except TimeoutError:
                pass
        self._event.clear()
        return woken

    async def connection(self) -> asyncpg.Connection:
        """The listening connection, for a worker's own statements between its waits: what it
        holds there (session-level locks) it loses with the connection, which wakes it."""
        await self._ensure_listening()
        assert self._connection is not None
        return self._connection

    def clear(self) -> None:
        """Forget the wakes so far: the waiter is about to look at what they announced."""
        self._event.clear()

    def wake(self) -> None:
        """Wake the waiter from within this process, as a notification would."""
        self._event.set()

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close(timeout=2)
            self._connection = None

    async def _ensure_listening(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            return
        await self.close()
        self._connection = await asyncpg.connect(self._dsn, server_settings=self._server_settings)
        await self._connection.add_listener(self._channel, lambda *_: self._event.set())
        self._connection.add_termination_listener(lambda *_: self._event.set())
        # Anything written while we were not listening is picked up by the caller's next pass.
        self._event.set()


async def notify(session: AsyncSession, channel: str) -> None:
    """NOTIFY `channel` when the session's transaction commits. PostgreSQL delivers it once
    per channel and transaction however often it is asked for, so it is staged
    (`shared.staging`): written with the transaction's outbox rows, in one statement at its
    commit, not one statement per call."""
    staged(session).notify(channel)
