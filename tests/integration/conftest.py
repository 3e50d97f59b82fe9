"""The whole system as separate processes, plus a webhook sink standing in for the parties."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from shared.db import create_engine, create_session_factory, service_metadata
from shared.devrun import ServiceProcesses
from shared.localinfra import Infrastructure
from shared.messaging import Outbox, inbox_table, outbox_table
from shared.settings import Settings
from tests.support import WebhookSink, clients_for, directory_with_contacts, running_system
from tests.support import webhook_sink as start_webhook_sink


@pytest.fixture(scope="session")
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    async with start_webhook_sink() as sink:
        yield sink


@pytest.fixture(scope="session")
def webhook_directory(work_dir: Path, webhook_sink: WebhookSink) -> Path:
    """The real directory of 乌审旗 with every party reached through the sink."""
    return directory_with_contacts(
        work_dir / "directory.yaml",
        lambda _party: [{"channel": "webhook", "address": webhook_sink.url}],
    )


@pytest.fixture(scope="session")
async def system(
    infra: Infrastructure, work_dir: Path, webhook_directory: Path
) -> AsyncIterator[ServiceProcesses]:
    async with running_system(
        work_dir, {"DIRECTORY_FILE": str(webhook_directory)}, infra=infra
    ) as (_, services):
        yield services


@pytest.fixture(scope="session")
async def clients(
    system: ServiceProcesses, work_dir: Path
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    opened = clients_for(system, work_dir)
    yield opened
    for client in opened.values():
        await client.aclose()


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
