"""`shared.db.single_statement`: one statement without BEGIN and COMMIT, committed as it ends;
the pooled connection it used is transactional again for whoever takes it next. Real
PostgreSQL, a table of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_engine, create_session_factory, single_statement, transaction
from shared.settings import Settings

TABLE = "public.single_statement_test"


class Undone(Exception):
    pass


@pytest.fixture
async def sessions(infra_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    # One pooled connection: the transaction after the single statement gets the same one.
    engine = create_engine(infra_settings, pool_size=1)
    async with engine.begin() as connection:
        await connection.execute(text(f"CREATE TABLE IF NOT EXISTS {TABLE} (id uuid PRIMARY KEY)"))
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def visible_elsewhere(settings: Settings, row_id: object) -> bool:
    connection = await asyncpg.connect(settings.plain_database_url)
    try:
        return bool(
            await connection.fetchval(f"SELECT count(*) FROM {TABLE} WHERE id = $1", row_id)
        )
    finally:
        await connection.close()


async def test_a_single_statement_commits_as_it_ends_and_leaves_no_transaction_behind(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    written, undone = uuid4(), uuid4()
    async with single_statement(sessions) as connection:
        await connection.execute(text(f"INSERT INTO {TABLE} VALUES (:id)"), {"id": written})
        # Seen by another connection before the block ends: nothing waits for a COMMIT.
        assert await visible_elsewhere(infra_settings, written)
        in_transaction = await connection.execute(
            text("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")
        )
        assert in_transaction.scalar_one() is False

    # The same pooled connection, in a transaction again: a failure undoes what it wrote.
    with pytest.raises(Undone):
        async with transaction(sessions) as session:
            await session.execute(text(f"INSERT INTO {TABLE} VALUES (:id)"), {"id": undone})
            raise Undone
    assert not await visible_elsewhere(infra_settings, undone)
    assert await visible_elsewhere(infra_settings, written)
