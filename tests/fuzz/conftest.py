"""A PostgreSQL and broker of the fuzz tests' own, with every service's schema migrated.

Not the session's `infra`: the fuzzed rows (incidents, obligations, outbox events, dead letters)
would otherwise be found by the services the integration tests start on it, and acted upon.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_engine, create_session_factory, migrate
from shared.kafka import create_producer
from shared.settings import SERVICE_NAMES, Settings
from tests.fuzz.harness import ConsumerUnderTest, DeadLetters, consumer_under_test
from tools.localinfra import Infrastructure, infrastructure


@dataclass
class FuzzBench:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    dead_letters: DeadLetters
    # Offsets are unique across the whole run, so a dead letter names exactly one record.
    offsets: itertools.count
    consumers: dict[str, ConsumerUnderTest] = field(default_factory=dict)

    def consumer(self, service: str, group: str) -> ConsumerUnderTest:
        """The group's consumer, built once: every example of a test shares it."""
        if group not in self.consumers:
            self.consumers[group] = consumer_under_test(
                self.settings, service, group, self.sessions, self.producer, self.offsets
            )
        return self.consumers[group]


@pytest.fixture(scope="package")
async def fuzz_infra(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Infrastructure]:
    work_dir = tmp_path_factory.mktemp("fuzz")
    work_dir.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data folder
    async with infrastructure(Settings(), work_dir, fresh=True) as started:
        yield started


@pytest.fixture(scope="package")
async def bench(
    fuzz_infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FuzzBench]:
    work_dir = tmp_path_factory.mktemp("fuzz-files")
    settings = Settings(
        database_url=fuzz_infra.database_url,
        kafka_bootstrap_servers=fuzz_infra.kafka_bootstrap_servers,
        alerts_file=work_dir / "alerts.jsonl",
        local_data_dir=work_dir,
        log_json=False,
        notification_ack_secret="fuzz-ack-secret",
        **(
            {"kafka_enable_idempotence": True} if os.environ.get("KAFKA_ENABLE_IDEMPOTENCE") else {}
        ),
    )
    for service in SERVICE_NAMES:
        await migrate(settings, service)
    engine = create_engine(settings)
    producer = create_producer(settings, client_id="fuzz")
    await producer.start()
    letters = DeadLetters(fuzz_infra.kafka_bootstrap_servers)
    await letters.start()
    try:
        yield FuzzBench(
            settings, create_session_factory(engine), producer, letters, itertools.count()
        )
    finally:
        await letters.stop()
        await producer.stop()
        await engine.dispose()
