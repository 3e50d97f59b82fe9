"""A writer wakes its own process's relay in process (`shared.messaging.LocalRelay`): a write
whose rows all fall in the shards that relay holds notifies nobody, and the relay sends the rows
once the write has committed; a write to a shard the relay does not hold notifies, as before;
the relay keeps its shards while such a write is under way, and lets them go as soon as its
connection is lost; intake's first report and
notification's record of delivered answers do the same (migration 0017: the call notifies only
when given a channel). Escalation's deadlines are woken alike (`Nudge`).

Whether a NOTIFY was sent is read from a connection listening on the outbox's channel: a marker
notified after the write arrives after anything the write's commit notified, so the test waits
for the marker, never for time."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import zlib
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake import first_report
from shared import messaging
from shared.events import CloudEvent
from shared.messaging import OUTBOX_SHARDS, LocalRelay, Outbox, notify_channel
from shared.pgnotify import Listener, Nudge
from shared.settings import Settings
from tests.integration.helpers import eventually, reported_event
from tests.integration.test_first_report_call import report
from tests.integration.test_relay_pace import HeldRelay, running
from tests.support import listening


@pytest.fixture(autouse=True)
def lease_without_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """A relay keeps its shards through a test, unless the test ends its lease."""
    monkeypatch.setattr(messaging, "LEASE_SECONDS", 3600.0)


async def shards_held(outbox: Outbox) -> frozenset[int]:
    """The shards the writers of this process see their relay hold."""
    return outbox.local.held


async def locked_shards(sessions: async_sessionmaker[AsyncSession], outbox: Outbox) -> int:
    """How many of the outbox's shards a relay holds, as PostgreSQL's locks say."""
    async with sessions() as session:
        found = await session.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = :space"
            ),
            {"space": lock_space(outbox)},
        )
        return int(found.scalar_one())


def lock_space(outbox: Outbox) -> int:
    return zlib.crc32(f"outbox:{outbox.schema}".encode()) & 0x7FFFFFFF


def shard_of(event: CloudEvent) -> int:
    return zlib.crc32(event.key) % OUTBOX_SHARDS


async def test_a_write_to_the_shards_the_relay_holds_wakes_it_and_notifies_nobody(
    infra_settings: Settings, scratch_schema: Any, scratch_producer: AIOKafkaProducer
) -> None:
    sessions, outbox, _ = scratch_schema
    dsn = infra_settings.plain_database_url
    async with (
        listening(dsn, notify_channel(outbox.schema)) as heard,
        running(infra_settings, scratch_schema, scratch_producer) as relay,
    ):
        await eventually(lambda: shards_held(outbox), lambda held: len(held) == OUTBOX_SHARDS)
        async with sessions() as session, session.begin():
            await outbox.add(session, reported_event())
            assert outbox.local.writing == 1  # under way until it ends
        await eventually(relay.sent, lambda passes: sum(passes) == 1)
        assert await heard.so_far(dsn) == []
        assert outbox.local.writing == 0


async def test_a_write_to_a_shard_another_relay_holds_notifies(
    infra_settings: Settings, scratch_schema: Any, scratch_producer: AIOKafkaProducer
) -> None:
    """Another replica holds the event's shard: it is the one to wake, by a NOTIFY."""
    sessions, outbox, _ = scratch_schema
    dsn = infra_settings.plain_database_url
    event = reported_event()
    space = lock_space(outbox)
    replica = await asyncpg.connect(dsn)
    try:
        assert await replica.fetchval("SELECT pg_try_advisory_lock($1, $2)", space, shard_of(event))
        async with (
            listening(dsn, notify_channel(outbox.schema)) as heard,
            running(infra_settings, scratch_schema, scratch_producer) as relay,
        ):
            await eventually(
                lambda: shards_held(outbox), lambda held: len(held) == OUTBOX_SHARDS - 1
            )
            async with sessions() as session, session.begin():
                await outbox.add(session, event)
                assert outbox.local.writing == 0
            assert await heard.so_far(dsn) == [""]
            assert sum(await relay.sent()) == 0  # the replica's to send
    finally:
        await replica.close()


async def test_a_write_without_a_relay_in_its_process_notifies(
    infra_settings: Settings, scratch_schema: Any
) -> None:
    sessions, outbox, _ = scratch_schema
    dsn = infra_settings.plain_database_url
    async with listening(dsn, notify_channel(outbox.schema)) as heard:
        async with sessions() as session, session.begin():
            await outbox.add(session, reported_event())
        assert await heard.so_far(dsn) == [""]


async def test_the_relay_keeps_its_shards_while_a_write_that_wakes_it_is_under_way(
    infra_settings: Settings,
    scratch_schema: Any,
    scratch_producer: AIOKafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its lease over, the relay lets its shards go after a pass; while a write that counts on
    it is open, it keeps them (new writes notify meanwhile), sends that write's row once it has
    committed, and then lets them go."""
    sessions, outbox, _ = scratch_schema
    async with running(infra_settings, scratch_schema, scratch_producer) as relay:
        await eventually(lambda: shards_held(outbox), lambda held: len(held) == OUTBOX_SHARDS)
        passes = len(relay.passes)
        async with sessions() as session, session.begin():
            await outbox.add(session, reported_event())
            monkeypatch.setattr(messaging, "LEASE_SECONDS", 0.0)  # every lease over
            outbox.local.wake()  # a pass, the write still open
            await eventually(lambda: asyncio.sleep(0, len(relay.passes)), lambda n: n > passes)
            # Its lease over, the writers notify again; the shards stay with the relay.
            assert await shards_held(outbox) == frozenset()
            assert await locked_shards(sessions, outbox) == OUTBOX_SHARDS
        await eventually(relay.sent, lambda passes: sum(passes) == 1)
        # The write ended: the shards go.
        await eventually(lambda: locked_shards(sessions, outbox), lambda locked: locked == 0)


class ReconnectingWhenLetGo(HeldRelay):
    """A relay whose new connection, once its first is lost, waits until the test lets it
    connect: its next pass is held before it could lease anything anew."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.may_reconnect = asyncio.Event()
        self._connected_once = False

    async def connection(self) -> asyncpg.Connection:
        if self._connected_once:
            await self.may_reconnect.wait()
        connection = await super().connection()
        self._connected_once = True
        return connection


async def test_the_writers_notify_as_soon_as_the_relay_s_connection_is_lost(
    infra_settings: Settings, scratch_schema: Any, scratch_producer: AIOKafkaProducer
) -> None:
    """The shards a relay holds go with its connection. From the moment the loss is seen,
    the process's writers notify (another replica may take the shards), not from the relay's
    next pass, which here waits for a new connection. Once it has one, the relay takes
    shards anew and sends what was written meanwhile."""
    sessions, outbox, _ = scratch_schema
    dsn = infra_settings.plain_database_url
    space = lock_space(outbox)
    async with running(
        infra_settings, scratch_schema, scratch_producer, relay_class=ReconnectingWhenLetGo
    ) as relay:
        assert isinstance(relay, ReconnectingWhenLetGo)
        await eventually(lambda: shards_held(outbox), lambda held: len(held) == OUTBOX_SHARDS)
        killer = await asyncpg.connect(dsn)
        try:
            terminated = await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM (SELECT DISTINCT pid FROM"
                " pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1) AS holder",
                space,
            )
        finally:
            await killer.close()
        assert terminated == 1
        await eventually(lambda: shards_held(outbox), lambda held: held == frozenset())
        async with listening(dsn, notify_channel(outbox.schema)) as heard:
            async with sessions() as session, session.begin():
                await outbox.add(session, reported_event())
                assert outbox.local.writing == 0
            assert await heard.so_far(dsn) == [""]
        assert sum(await relay.sent()) == 0
        relay.may_reconnect.set()
        await eventually(lambda: shards_held(outbox), lambda held: len(held) == OUTBOX_SHARDS)
        await eventually(relay.sent, lambda passes: sum(passes) == 1)


async def test_a_first_report_whose_event_the_relay_holds_wakes_it_and_notifies_nobody(
    system_sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    dsn = infra_settings.plain_database_url
    woken: list[bool] = []
    relay = LocalRelay()
    assert relay.attach(lambda: woken.append(True))
    first_reports = first_report.FirstReports(lambda: system_sessions, relay)
    async with listening(dsn, notify_channel("intake")) as heard:
        relay.held = frozenset(range(OUTBOX_SHARDS))
        assert (await first_reports.write(report(infra_settings))).written
        assert woken == [True] and relay.writing == 0
        assert await heard.so_far(dsn) == []

        relay.held = frozenset()  # the shards with another replica: notified as before
        assert (await first_reports.write(report(infra_settings))).written
        assert woken == [True] and relay.writing == 0
        assert await heard.so_far(dsn) == [""]


async def test_a_nudge_wakes_the_worker_of_its_process_once_committed_and_notifies_nobody(
    infra_settings: Settings, scratch_schema: Any
) -> None:
    """Escalation's deadlines (`Nudge`): a write wakes the worker running in its process when
    it commits (once, however often it asks), not when it rolls back, and notifies nobody."""
    sessions, _, _ = scratch_schema
    dsn = infra_settings.plain_database_url
    channel = f"nudged_{uuid.uuid4().hex[:8]}"
    listener = Listener(dsn)
    wakeup = listener.wakeup(channel)
    nudge = Nudge(channel)
    try:
        await wakeup.wait(0)  # heard from now on (a new waiter is woken once)
        nudge.attach(wakeup)
        async with listening(dsn, channel) as heard:
            with contextlib.suppress(RolledBack):
                async with sessions() as session, session.begin():
                    await nudge.notify(session)
                    raise RolledBack
            assert not await wakeup.wait(0)
            async with sessions() as session, session.begin():
                await nudge.notify(session)
                await nudge.notify(session)
                assert not await wakeup.wait(0)  # not before the commit
            assert await wakeup.wait(0)
            assert await heard.so_far(dsn) == []

            nudge.detach()  # no worker here: every replica's is notified
            async with sessions() as session, session.begin():
                await nudge.notify(session)
            assert await heard.so_far(dsn) == [""]
    finally:
        await wakeup.close()


class RolledBack(Exception):
    pass
