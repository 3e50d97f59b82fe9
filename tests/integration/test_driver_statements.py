"""A hot path's statement sent to asyncpg as it is (`shared.db.fetch`) belongs to the session's
transaction like any other, whichever comes first, and fails as SQLAlchemy's statements fail
(real PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.db import database_unavailable, single_statement, sqlstate
from shared.driver import DriverStatement, fetch
from shared.kafka import is_permanent, is_transient
from shared.messaging import Outbox
from shared.settings import Settings
from tests.integration.helpers import PATIENCE_SECONDS, eventually
from tests.support import execute_sql, statements_sent

Scratch = tuple[async_sessionmaker[AsyncSession], Outbox, Any]

CLAIM = text(
    'INSERT INTO {schema}.inbox (ce_source, ce_id, ce_type, consumer, topic, "partition",'
    " \"offset\") VALUES (:source, :id, 'test.kind', :consumer, 't', 0, :offset)"
    ' RETURNING ce_id AS id, "offset", consumer'
)


def claim(schema: str) -> Any:
    return text(CLAIM.text.replace("{schema}", schema))


def test_named_parameters_are_numbered_once_each_and_casts_are_left_alone() -> None:
    statement = DriverStatement.of(
        text("SELECT CAST(:a AS int), n::text, :a, 'x::y', ARRAY[:b_2] WHERE :b = :b")
    )
    assert statement.sql == "SELECT CAST($1 AS int), n::text, $1, 'x::y', ARRAY[$2] WHERE $3 = $3"
    assert statement.names == ("a", "b_2", "b")
    assert statement.arguments({"b_2": 3, "a": 1, "b": 2, "unused": 4}) == [1, 3, 2]


async def test_a_driver_statement_commits_and_rolls_back_with_the_session(
    scratch_schema: Scratch,
) -> None:
    sessions, outbox, _ = scratch_schema
    schema = outbox.table.schema
    kept, dropped = uuid4(), uuid4()
    async with sessions() as session:
        engine = session.bind
        with statements_sent(engine) as statements:  # type: ignore[arg-type]
            async with session.begin():
                # The first statement of the transaction: sent after BEGIN, not before it.
                [row] = await fetch(
                    session,
                    claim(schema),
                    {"source": "s", "id": kept, "consumer": "c", "offset": 1},
                )
                seen = await session.scalar(
                    text(f"SELECT count(*) FROM {schema}.inbox WHERE ce_id = :id"), {"id": kept}
                )
            async with session.begin():
                await session.execute(text("SELECT 1"))  # SQLAlchemy's statement first here
                await fetch(
                    session,
                    claim(schema),
                    {"source": "s", "id": dropped, "consumer": "c", "offset": 2},
                )
                await session.rollback()
    assert (row.id, row.offset, row["consumer"], tuple(row)) == (kept, 1, "c", (kept, 1, "c"))
    assert seen == 1  # SQLAlchemy's statement sees the driver's row: the same transaction
    assert [statement.split()[0] for statement in statements] == [
        "INSERT",
        "SELECT",
        "SELECT",
        "INSERT",
    ]
    async with sessions() as session:
        stored = (
            (await session.execute(text(f'SELECT ce_id FROM {schema}.inbox ORDER BY "offset"')))
            .scalars()
            .all()
        )
    assert stored == [kept]


async def test_a_driver_statement_fails_as_sqlalchemy_s_statements_fail(
    scratch_schema: Scratch,
) -> None:
    sessions, outbox, _ = scratch_schema
    schema = outbox.table.schema
    twice = {"source": "s", "id": uuid4(), "consumer": "c", "offset": 1}
    async with sessions() as session, session.begin():
        await fetch(session, claim(schema), twice)
    with pytest.raises(IntegrityError) as raised:
        async with sessions() as session, session.begin():
            await fetch(session, claim(schema), twice)
    assert sqlstate(raised.value) == "23505"  # unique violation
    assert is_permanent(raised.value) and not is_transient(raised.value)
    async with sessions() as session, session.begin():
        # The connection is fit for use again: the failed transaction was rolled back.
        assert await fetch(session, text("SELECT CAST(:n AS int) AS n"), {"n": 7}) == [(7,)]


async def test_a_driver_statement_on_a_connection_commits_with_it_or_on_its_own(
    scratch_schema: Scratch,
) -> None:
    """On `single_statement`'s connection (autocommit) the statement commits on its own; on a
    connection in a transaction, with the transaction; on a connection in neither it is
    refused, as SQLAlchemy would roll back unseen a transaction it did not begin."""
    sessions, outbox, _ = scratch_schema
    schema = outbox.table.schema
    engine: AsyncEngine = sessions.kw["bind"]
    alone, together, dropped = uuid4(), uuid4(), uuid4()
    async with single_statement(sessions) as connection:
        await fetch(
            connection, claim(schema), {"source": "s", "id": alone, "consumer": "c", "offset": 1}
        )
    async with engine.begin() as connection:
        await fetch(
            connection, claim(schema), {"source": "s", "id": together, "consumer": "c", "offset": 2}
        )
    async with engine.connect() as connection:
        await connection.begin()
        await fetch(
            connection, claim(schema), {"source": "s", "id": dropped, "consumer": "c", "offset": 3}
        )
        await connection.rollback()
        with pytest.raises(TypeError):
            await fetch(connection, text("SELECT 1"))
    async with sessions() as session:
        stored = await session.execute(text(f'SELECT ce_id FROM {schema}.inbox ORDER BY "offset"'))
        assert list(stored.scalars()) == [alone, together]


async def test_a_lost_connection_is_invalidated_and_never_handed_out_again(
    scratch_schema: Scratch, infra_settings: Settings
) -> None:
    """As SQLAlchemy does for its own statements: a statement whose connection was lost
    raises `DBAPIError` with the connection invalidated (the database unavailable: retried,
    never dead-lettered), and the pool opens a new one for the next transaction."""
    sessions, _, _ = scratch_schema
    async with sessions() as session:
        await session.begin()
        [row] = await fetch(session, text("SELECT pg_backend_pid() AS pid"))
        await execute_sql(infra_settings, "SELECT pg_terminate_backend($1)", row.pid)
        with pytest.raises(DBAPIError) as raised:
            await fetch(session, text("SELECT 1"))
        await session.rollback()
    assert raised.value.connection_invalidated
    assert database_unavailable(raised.value) and is_transient(raised.value)
    async with sessions() as session, session.begin():
        [again] = await fetch(session, text("SELECT pg_backend_pid() AS pid"))
    assert again.pid != row.pid


async def test_a_statement_cancelled_midway_leaves_no_connection_behind_it(
    scratch_schema: Scratch,
) -> None:
    """A task cancelled while its statement runs (a service stopping) ends cancelled, as it
    would under SQLAlchemy's own statement; the connection, in an unknown state, is dropped as
    SQLAlchemy drops its own, and what comes next runs at once."""
    sessions, _, _ = scratch_schema

    async def sleeping() -> None:
        async with sessions() as session, session.begin():
            await fetch(session, text("SELECT pg_sleep(30)"))

    running = asyncio.create_task(sleeping())
    await eventually(lambda: asleep(sessions), lambda count: count == 1)
    running.cancel()
    async with asyncio.timeout(PATIENCE_SECONDS):
        (ended,) = await asyncio.gather(running, return_exceptions=True)
        assert isinstance(ended, asyncio.CancelledError)
        async with sessions() as session, session.begin():
            assert await fetch(session, text("SELECT 2 AS two")) == [(2,)]
        await eventually(lambda: asleep(sessions), lambda count: count == 0)


async def asleep(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        found = await session.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'")
        )
        return int(found.scalar_one())
