"""Fixtures of the end-to-end tests (the system itself is in tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_engine, create_session_factory, service_metadata
from shared.kafka import create_producer
from shared.messaging import Outbox, inbox_table, outbox_table
from shared.settings import Settings
from tools.devrun import ServiceProcesses


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


@pytest.fixture
async def scratch_producer(infra_settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    """A producer whose records all go to a topic of this test's own."""
    producer = create_producer(infra_settings, "test-scratch-producer")
    await producer.start()
    original_send = producer.send
    topic = f"scratch.{uuid.uuid4().hex[:8]}"

    async def send_to_scratch(_topic: str, **kwargs: Any) -> Any:
        return await original_send(topic, **kwargs)

    producer.send = send_to_scratch  # type: ignore[method-assign]
    yield producer
    await producer.stop()


@pytest.fixture
async def system_sessions(
    system: ServiceProcesses, infra_settings: Settings
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions of the suite's database while the system runs (its services migrated it)."""
    engine = create_engine(infra_settings, pool_size=1)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()
