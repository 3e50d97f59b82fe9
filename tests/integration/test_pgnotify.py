"""NOTIFY staged once per channel and transaction, all of a transaction's channels in one
statement at its commit, delivered at each commit, never after a rollback; a waiter whose
listening connection is lost is woken (shared/pgnotify.py)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from shared.db import create_engine, create_session_factory
from shared.pgnotify import Listener, notify
from shared.settings import Settings
from tests.support import statements_sent

PATIENCE_SECONDS = 30


async def test_a_channel_is_notified_once_per_transaction_and_again_in_the_next(
    infra_settings: Settings,
) -> None:
    channel = f"test_{uuid.uuid4().hex[:8]}"
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(infra_settings.plain_database_url)
    await listener.add_listener(channel, lambda *args: heard.put_nowait(args[2]))
    engine = create_engine(infra_settings, pool_size=1)
    sessions = create_session_factory(engine)
    try:
        with statements_sent(engine) as statements:
            for _ in range(2):
                async with sessions() as session, session.begin():
                    await notify(session, channel)
                    await notify(session, channel)
                    await notify(session, "another_channel")
                async with asyncio.timeout(PATIENCE_SECONDS):
                    assert await heard.get() == channel
            # One session, two transactions each begun by the NOTIFY itself: both heard.
            async with sessions() as session:
                for _ in range(2):
                    await notify(session, channel)
                    await session.commit()
                    async with asyncio.timeout(PATIENCE_SECONDS):
                        assert await heard.get() == channel
            async with sessions() as session:
                await notify(session, channel)
                await session.rollback()
            async with sessions() as session, session.begin():
                pass  # nothing staged: nothing written
            assert heard.empty()
            # One statement per committed transaction, however many channels and calls it had.
            assert sum("pg_notify" in s for s in statements) == 4
    finally:
        await listener.close()
        await engine.dispose()


async def test_a_waiter_is_woken_when_its_listening_connection_is_lost(
    infra_settings: Settings,
) -> None:
    channel = f"test_{uuid.uuid4().hex[:8]}"
    listener = Listener(infra_settings.plain_database_url)
    wakeup = listener.wakeup(channel)
    try:
        await wakeup.wait(0)  # listening now (a first wait returns at once: a pass is due)
        connection = listener.connection
        assert connection is not None
        admin = await asyncpg.connect(infra_settings.plain_database_url)
        try:
            waiting = asyncio.create_task(wakeup.wait(3600))
            await asyncio.sleep(0)
            await admin.execute("SELECT pg_terminate_backend($1)", connection.get_server_pid())
            async with asyncio.timeout(PATIENCE_SECONDS):
                assert await waiting  # woken by the loss, not after the hour
        finally:
            await admin.close()
        assert await wakeup.wait(0)  # listening again: a pass for what it may have missed
        assert listener.connection is not None and not listener.connection.is_closed()
        assert not await wakeup.wait(0.01)  # nothing since: the time ran out
    finally:
        await wakeup.close()
    assert listener.connection is None  # its last waiter gone, it listens no more


async def test_a_process_listens_on_one_connection_for_all_its_waiters(
    infra_settings: Settings,
) -> None:
    """Every NOTIFY signals every listening backend of the database: the waiters of a process
    share one, and each is woken by its own channel only."""
    dsn = infra_settings.plain_database_url
    first, second = (f"test_{uuid.uuid4().hex[:8]}" for _ in range(2))
    listener = Listener(dsn)
    one, also_one, two = listener.wakeup(first), listener.wakeup(first), listener.wakeup(second)
    sender = await asyncpg.connect(dsn)
    try:
        for waiter in (one, also_one, two):
            assert await waiter.wait(0)  # the connection's opening is a wake-up for each
        connection = listener.connection
        assert connection is not None
        assert set(
            await connection.fetchval("SELECT array_agg(c) FROM pg_listening_channels() c")
        ) == {
            first,
            second,
        }
        await sender.execute("SELECT pg_notify($1, '')", first)
        async with asyncio.timeout(PATIENCE_SECONDS):
            assert await one.wait(3600)
            assert await also_one.wait(3600)
        assert not await two.wait(0.01)
        await two.close()
        assert await connection.fetchval("SELECT array_agg(c) FROM pg_listening_channels() c") == [
            first
        ]
        # Closed, it is heard again once it waits again.
        await sender.execute("SELECT pg_notify($1, '')", second)
        assert await two.wait(0)  # its channel asked for again: a pass for what it missed
        await sender.execute("SELECT pg_notify($1, '')", second)
        async with asyncio.timeout(PATIENCE_SECONDS):
            assert await two.wait(3600)
        assert not await one.wait(0.01)
        assert listener.connection is connection  # one connection throughout
    finally:
        await sender.close()
        for waiter in (one, also_one, two):
            await waiter.close()
    assert listener.connection is None
