"""NOTIFY staged once per channel and transaction, all of a transaction's channels in one
statement at its commit, delivered at each commit, never after a rollback; a waiter whose
listening connection is lost is woken (shared/pgnotify.py)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from shared.db import create_engine, create_session_factory
from shared.pgnotify import Wakeup, notify
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
    wakeup = Wakeup(infra_settings.plain_database_url, channel)
    try:
        await wakeup.wait(0)  # listening now (a first wait returns at once: a pass is due)
        connection = wakeup._connection
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
        assert wakeup._connection is not None and not wakeup._connection.is_closed()
        assert not await wakeup.wait(0.01)  # nothing since: the time ran out
    finally:
        await wakeup.close()
