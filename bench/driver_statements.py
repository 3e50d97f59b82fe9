"""A statement through SQLAlchemy against the same statement sent to the driver
(`shared.driver.fetch`), in a service's session, and against asyncpg alone (a pooled connection
and a transaction of its own, no session): the client's CPU of a short transaction.

    python -m bench.driver_statements [--transactions 1500] [--rounds 3] [--statements 2]

Starts a local PostgreSQL (or uses `DATABASE_URL`), makes a scratch schema with an inbox as
every service has, and runs transactions of `--statements` inbox claims each (the statement
every consumer's batch starts with), through `session.execute` and through `fetch` in turn,
and through asyncpg alone, round after round. Prints the process CPU time per transaction of
each; the machine's swing moves them alike within a round, so compare them within each round.
What the driver's transaction costs beyond asyncpg's is the session around the statements: its
transaction, the pool's checkout, `BEGIN` and `COMMIT` through SQLAlchemy.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import KeptSession, create_engine, create_session_factory, service_metadata
from shared.driver import driver_statement, fetch
from shared.messaging import inbox_table
from shared.settings import Settings
from tools.localinfra import LocalPostgres

SCHEMA = "bench_driver"
CLAIM = text(
    f'INSERT INTO {SCHEMA}.inbox (ce_source, ce_id, ce_type, consumer, topic, "partition",'
    " \"offset\") SELECT 'bench', id, 'bench.claim', 'bench', 'bench', 0, 0"
    " FROM unnest(CAST(:ids AS uuid[])) AS id ON CONFLICT DO NOTHING RETURNING ce_id"
)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def through_sqlalchemy(sessions: async_sessionmaker[AsyncSession], statements: int) -> None:
    async with sessions() as session, session.begin():
        for _ in range(statements):
            (await session.execute(CLAIM, {"ids": [uuid.uuid4()]})).all()


async def through_the_driver(sessions: async_sessionmaker[AsyncSession], statements: int) -> None:
    async with sessions() as session, session.begin():
        for _ in range(statements):
            await fetch(session, CLAIM, {"ids": [uuid.uuid4()]})


async def through_the_driver_in_a_kept_session(kept: KeptSession, statements: int) -> None:
    async with kept.transaction() as session:
        for _ in range(statements):
            await fetch(session, CLAIM, {"ids": [uuid.uuid4()]})


async def through_asyncpg_alone(pool: asyncpg.Pool, statements: int) -> None:
    sql = driver_statement(CLAIM).sql
    async with pool.acquire() as connection, connection.transaction():
        for _ in range(statements):
            await connection.fetch(sql, [uuid.uuid4()])


async def measure(database_url: str, transactions: int, rounds: int, statements: int) -> None:
    engine = create_engine(Settings(database_url=database_url), pool_size=2)
    metadata = service_metadata(SCHEMA)
    inbox_table(metadata)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            await connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
            await connection.run_sync(metadata.create_all)
        sessions = create_session_factory(engine)
        kept = KeptSession(sessions)
        plain_url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        async with asyncpg.create_pool(plain_url, min_size=1, max_size=2) as pool:
            ways: tuple[tuple[str, Any, Any], ...] = (
                ("sqlalchemy", through_sqlalchemy, sessions),
                ("driver", through_the_driver, sessions),
                ("driver, session kept", through_the_driver_in_a_kept_session, kept),
                ("asyncpg alone", through_asyncpg_alone, pool),
            )
            for round_number in range(1, rounds + 1):
                for name, transaction, on in ways:
                    for _ in range(transactions // 10):  # warm: statements prepared, pool open
                        await transaction(on, statements)
                    started = cpu_seconds()
                    for _ in range(transactions):
                        await transaction(on, statements)
                    per_transaction = (cpu_seconds() - started) / transactions * 1e6
                    print(
                        f"round {round_number} {name}: {per_transaction:.0f} µs of CPU a"
                        f" transaction of {statements} statements",
                        flush=True,
                    )
        await kept.close()
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {SCHEMA} CASCADE"))
    finally:
        await engine.dispose()


async def main(transactions: int, rounds: int, statements: int) -> None:
    configured = Settings().database_url
    if configured:
        await measure(configured, transactions, rounds, statements)
        return
    postgres = LocalPostgres(Path(tempfile.mkdtemp()) / "postgres")
    await postgres.start()
    try:
        await measure(postgres.url, transactions, rounds, statements)
    finally:
        await postgres.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--statements", type=int, default=2)
    options = parser.parse_args()
    asyncio.run(main(options.transactions, options.rounds, options.statements))
