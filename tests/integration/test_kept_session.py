"""A worker's session kept from one unit of work to the next (`shared.db.KeptSession`) is, for
each unit of work, what a session of its own would be: one transaction, committed or rolled
back, no rows or connection carried over, and driver statements in the transaction of the unit
of work they run in (real PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.db import KeptSession
from shared.driver import fetch
from shared.messaging import Outbox

Scratch = tuple[async_sessionmaker[AsyncSession], Outbox, Any]

BACKEND = text("SELECT pg_backend_pid() AS pid, txid_current() AS transaction")


def claim(schema: str) -> Any:
    return text(
        f'INSERT INTO {schema}.inbox (ce_source, ce_id, ce_type, consumer, topic, "partition",'
        " \"offset\") VALUES ('s', :id, 'test.kind', 'c', 't', 0, :offset)"
    )


async def stored_ids(sessions: async_sessionmaker[AsyncSession], schema: str) -> list[Any]:
    async with sessions() as session:
        found = await session.execute(text(f'SELECT ce_id FROM {schema}.inbox ORDER BY "offset"'))
        return list(found.scalars())


async def test_each_unit_of_work_commits_on_its_own_and_the_session_is_kept(
    scratch_schema: Scratch,
) -> None:
    sessions, outbox, inbox = scratch_schema
    schema = outbox.table.schema
    engine: AsyncEngine = sessions.kw["bind"]
    kept = KeptSession(sessions)
    first, second = uuid4(), uuid4()
    async with kept.transaction() as session:
        await fetch(session, claim(schema), {"id": first, "offset": 1})
        loaded = (await session.execute(inbox.select())).all()
        used = session
    # Committed, the connection back in the pool, nothing loaded kept for the next one.
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert await stored_ids(sessions, schema) == [first]
    assert len(loaded) == 1 and not used.identity_map
    async with kept.transaction() as session:
        assert session is used
        await fetch(session, claim(schema), {"id": second, "offset": 2})
    assert await stored_ids(sessions, schema) == [first, second]
    await kept.close()


async def test_a_unit_of_work_that_fails_is_rolled_back_and_its_session_closed(
    scratch_schema: Scratch,
) -> None:
    sessions, outbox, _ = scratch_schema
    schema = outbox.table.schema
    kept = KeptSession(sessions)
    dropped, later = uuid4(), uuid4()
    with pytest.raises(RuntimeError):
        async with kept.transaction() as session:
            await fetch(session, claim(schema), {"id": dropped, "offset": 1})
            failed = session
            raise RuntimeError("the handler failed")
    async with kept.transaction() as session:
        assert session is not failed  # a new session after a failure
        await fetch(session, claim(schema), {"id": later, "offset": 2})
    assert await stored_ids(sessions, schema) == [later]
    await kept.close()


async def test_a_unit_of_work_asked_for_while_one_runs_gets_a_session_of_its_own(
    scratch_schema: Scratch,
) -> None:
    sessions, _, _ = scratch_schema
    kept = KeptSession(sessions)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> tuple[AsyncSession, Any]:
        async with kept.transaction() as session:
            [row] = await fetch(session, BACKEND)
            inside.set()
            await release.wait()
            return session, row

    running = asyncio.create_task(first())
    await inside.wait()
    async with kept.transaction() as session:
        [other_row] = await fetch(session, BACKEND)
        other = session
    release.set()
    session, row = await running
    assert other is not session
    assert (other_row.pid, other_row.transaction) != (row.pid, row.transaction)
    await kept.close()


async def test_driver_statements_follow_the_connection_of_each_unit_of_work(
    scratch_schema: Scratch,
) -> None:
    """`fetch` keeps the connection it found for the rest of its transaction: the next unit of
    work, on another connection of the pool, sends its statements there, not to the last one."""
    sessions, _, _ = scratch_schema
    engine: AsyncEngine = sessions.kw["bind"]
    kept = KeptSession(sessions)
    async with kept.transaction() as session:
        [before] = await fetch(session, BACKEND)
    async with engine.connect() as holding:  # the connection just used, taken by another
        [(held_pid,)] = (await holding.execute(text("SELECT pg_backend_pid()"))).all()
        assert held_pid == before.pid  # the pool hands out the one it got back last
        async with kept.transaction() as session:
            [by_driver] = await fetch(session, BACKEND)
            [again] = await fetch(session, BACKEND)
            by_sqlalchemy = (await session.execute(BACKEND)).one()
    assert by_driver.pid != before.pid
    assert by_driver == again == tuple(by_sqlalchemy)  # one connection, one transaction
    await kept.close()
