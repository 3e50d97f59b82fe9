"""Wake a worker on PostgreSQL NOTIFY, with a poll interval as the fallback.

A commit that notifies signals every backend of the database that listens, whatever its
channels, and each of them reads the notification queue to find out whether it was meant. So a
process listens on one connection for all its workers (`Listener`), each waiting on its channel
(`Wakeup`): one backend a process to wake, not one a worker. And a write meant for a worker of
its own process wakes it in process where it can (`Wakeup.wake`; the outbox's writers and their
relay, `shared.messaging.LocalRelay`), and notifies nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from shared.staging import of_transaction, staged, when_ended

# What a transaction keeps (`of_transaction`): the channels whose worker it wakes in process.
NUDGED = "nudged_in_process"


class Listener:
    """The one connection of a process that LISTENs, on every channel its waiters wait on.

    It is opened at the first wait and reopened after it drops (a database restart): its loss
    wakes every waiter, and so does its return, for a pass over what it may have missed. So a
    waiter's poll is only a fallback, and may be long: an idle worker then sleeps. It closes
    when its last waiter does.
    """

    def __init__(self, dsn: str, server_settings: Mapping[str, str] | None = None) -> None:
        self._dsn = dsn
        self._server_settings = dict(server_settings or {})
        self._waiters: dict[str, set[Wakeup]] = {}
        self._connection: asyncpg.Connection | None = None
        self._listened: set[str] = set()
        self._opening = asyncio.Lock()

    def wakeup(self, channel: str) -> Wakeup:
        """A waiter on `channel`, heard from its first wait until it closes."""
        return Wakeup(self, channel)

    @classmethod
    def alone(
        cls, dsn: str, channel: str, server_settings: Mapping[str, str] | None = None
    ) -> Wakeup:
        """A waiter with a listener of its own (closed with it): for a worker that runs
        outside a service process, or a test."""
        return cls(dsn, server_settings).wakeup(channel)

    @property
    def connection(self) -> asyncpg.Connection | None:
        """The listening connection, while open."""
        return self._connection

    async def listen(self, waiter: Wakeup) -> None:
        """`waiter` is heard once this returns (again, if it had closed): the connection
        opened (or opened again), and its channel asked for, if it was not yet. A waiter new
        to the listener is woken: its first pass looks at what came before it was heard."""
        channel = waiter.channel
        waiters = self._waiters.setdefault(channel, set())
        if waiter not in waiters:
            waiters.add(waiter)
            waiter.wake()
        if self._is_open() and channel in self._listened:
            return
        async with self._opening:
            if not self._is_open():
                await self._reopen()
            elif channel not in self._listened:
                assert self._connection is not None
                await self._connection.add_listener(channel, self._heard)
                self._listened.add(channel)

    async def forget(self, waiter: Wakeup) -> None:
        """`waiter` waits no more; the channel is no longer listened on when it was the
        channel's last, and the connection closes when it was the last of all."""
        waiters = self._waiters.get(waiter.channel)
        if waiters is None or waiter not in waiters:
            return
        waiters.discard(waiter)
        if waiters:
            return
        del self._waiters[waiter.channel]
        if not self._waiters:
            await self.close()
        elif self._is_open() and waiter.channel in self._listened:
            assert self._connection is not None
            self._listened.discard(waiter.channel)
            with contextlib.suppress(Exception):
                await self._connection.remove_listener(waiter.channel, self._heard)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._listened = set()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)

    def _is_open(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def _reopen(self) -> None:
        await self.close()
        connection = await asyncpg.connect(self._dsn, server_settings=self._server_settings)
        channels = list(self._waiters)
        for channel in channels:
            await connection.add_listener(channel, self._heard)
        connection.add_termination_listener(self._lost)
        self._connection, self._listened = connection, set(channels)
        # Anything written while nobody listened is picked up by the waiters' next passes.
        self._wake(waiter for waiters in self._waiters.values() for waiter in waiters)

    def _heard(self, _connection: Any, _pid: int, channel: str, _payload: str) -> None:
        self._wake(self._waiters.get(channel, ()))

    def _lost(self, connection: Any) -> None:
        if connection is self._connection:
            self._wake(waiter for waiters in self._waiters.values() for waiter in waiters)

    @staticmethod
    def _wake(waiters: Any) -> None:
        for waiter in waiters:
            waiter.wake()


class Wakeup:
    """A worker's wait for NOTIFY on one channel of its process's `Listener`: `wait` returns
    on a notification, on the listening connection lost or new, or after `poll_seconds`."""

    def __init__(self, listener: Listener, channel: str) -> None:
        self._listener = listener
        self.channel = channel
        self._event = asyncio.Event()

    async def wait(self, poll_seconds: float) -> bool:
        """Whether it was woken (a notification, or the connection lost or new) before
        `poll_seconds` passed."""
        await self._listener.listen(self)
        woken = self._event.is_set()
        if not woken:
            # Not `asyncio.wait_for`: on Python 3.11 it drops a cancellation that comes in the
            # same turn of the loop as the wake, and a worker stopped so waited on (a relay
            # stopped as a NOTIFY came went on to wait out its lease).
            try:
                async with asyncio.timeout(poll_seconds):
                    await self._event.wait()
                woken = True
            except TimeoutError:
                pass
        self._event.clear()
        return woken

    def clear(self) -> None:
        """Forget the wakes so far: the waiter is about to look at what they announced."""
        self._event.clear()

    def wake(self) -> None:
        """Wake the waiter from within this process, as a notification would."""
        self._event.set()

    async def close(self) -> None:
        """Waits no more; a later `wait` is heard again."""
        await self._listener.forget(self)


class Nudge:
    """How writers wake the workers of a channel whose work any replica's worker takes alike
    (escalation's deadlines): the worker of this process, while it runs (`attach`), once the
    write has committed, and no other process; a NOTIFY when none runs here. A NOTIFY at a
    commit wakes a backend of every process that listens, whatever its channels."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._here: Wakeup | None = None

    def attach(self, wakeup: Wakeup) -> None:
        """The worker of this process, woken by `wakeup`, now runs."""
        self._here = wakeup

    def detach(self) -> None:
        self._here = None

    async def notify(self, session: AsyncSession) -> None:
        """Wake the worker when the session's transaction commits: in process, or by NOTIFY."""
        here = self._here
        if here is None:
            await notify(session, self.channel)
            return
        woken: set[str] = of_transaction(session, NUDGED, set)
        if self.channel not in woken:  # once a transaction, however often asked
            woken.add(self.channel)
            when_ended(session, lambda committed: here.wake() if committed else None)


async def notify(session: AsyncSession, channel: str) -> None:
    """NOTIFY `channel` when the session's transaction commits. PostgreSQL delivers it once
    per channel and transaction however often it is asked for, so it is staged
    (`shared.staging`): written with the transaction's outbox rows, in one statement at its
    commit, not one statement per call."""
    staged(session).notify(channel)
