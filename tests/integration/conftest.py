"""Fixtures of the end-to-end tests (the system itself is in tests/conftest.py)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from shared.db import create_engine, create_session_factory, service_metadata
from shared.messaging import Outbox, inbox_table, outbox_table
from shared.settings import Settings


@pytest.fixture
async def scratch_schema(infra_settings: Settings):
    """A throw-away schema with an outbox and an inbox, as every service has."""
    schema = f"scratch_{uuid.uuid4().hex[:8]}"
    metadata = service_metadata(schema)
    outbox, inbox = outbox_table(metadata), inbox_table(metadata)
    engine = create_engine(infra_settings, pool_size=2)
    async with engine.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        await connection.run_sync(metadata.create_all)
    yield create_session_factory(engine), Outbox(outbox), inbox
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()
