"""Wake a worker on PostgreSQL NOTIFY, with a poll interval as the fallback."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

# session.info: the transaction and the channels a NOTIFY is queued on in it.
QUEUED_NOTIFICATIONS = "queued_notifications"


class Wakeup:
    """LISTENs on one channel; `wait` returns on a notification or after `poll_seconds`.

    The listening connection is reopened after it drops (a database restart): its loss wakes
    the waiter, which listens again and makes a pass for what it may have missed. So the poll
    is only a fallback, and may be long: an idle worker then sleeps.
    """

    def __init__(self, dsn: str, channel: str) -> None:
        self._dsn = dsn
        self._channel = channel
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
        self._connection = await asyncpg.connect(self._dsn)
        await self._connection.add_listener(self._channel, lambda *_: self._event.set())
        self._connection.add_termination_listener(lambda *_: self._event.set())
        # Anything written while we were not listening is picked up by the caller's next pass.
        self._event.set()


async def notify(session: AsyncSession, channel: str) -> None:
    """Queue a NOTIFY in the session's transaction; PostgreSQL delivers it at commit, once per
    channel and transaction however often it was queued, so it is queued once: an event
    handler that stages several outbox writes or deadlines costs one statement, not several."""
    queued: tuple[object, set[str]] | None = session.info.get(QUEUED_NOTIFICATIONS)
    transaction = session.sync_session.get_transaction()
    if (
        transaction is not None
        and queued is not None
        and queued[0] is transaction
        and channel in queued[1]
    ):
        return
    await session.execute(select(func.pg_notify(channel, "")))
    # The transaction the NOTIFY went into (begun by it, when it was the first statement).
    transaction = session.sync_session.get_transaction()
    if queued is None or queued[0] is not transaction:
        queued = (transaction, set())
        session.info[QUEUED_NOTIFICATIONS] = queued
    queued[1].add(channel)
