"""The one Alembic environment of every service; each keeps only its `migrations/versions`.

Each service keeps its tables and its `alembic_version` in its own schema; an advisory lock
keeps replicas that start together from migrating at the same time.
"""

from __future__ import annotations

import asyncio
import zlib

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool


def _migrate(connection: Connection, schema: str) -> None:
    lock_id = zlib.crc32(f"migrate:{schema}".encode())
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
    try:
        # In production the schema is the owner login's, made when the database was: that login
        # may not create schemas, and IF NOT EXISTS would still ask it to.
        present = connection.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
        ).first()
        if present is None:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=context.config.attributes.get("target_metadata"),
            version_table_schema=schema,
            include_schemas=True,
            include_name=lambda name, kind, _parents: kind != "schema" or name == schema,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
        connection.commit()


async def _run_online(url: str, schema: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate, schema)
    finally:
        await engine.dispose()


def run() -> None:
    config = context.config
    schema = config.attributes["schema"]
    if context.is_offline_mode():
        raise RuntimeError("offline migrations are not supported; run against a database")
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("the alembic configuration names no sqlalchemy.url")
    asyncio.run(_run_online(url, schema))


run()
