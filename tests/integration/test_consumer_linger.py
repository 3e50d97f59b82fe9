"""A consumer that lingers (`EventConsumer.linger_seconds`, audit's `AUDIT_BATCH_LINGER_MS`)
lets the records it fetched wait for more, up to its batch's size: records produced one after
another are applied as one batch, in their order. One that does not linger leaves no record
waiting, and a lingering one told to stop does not wait out its linger. Real broker and
PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import EVENT_TYPES, CloudEvent, topics
from shared.kafka import EventConsumer, HandlerTable, RecordPosition, create_producer
from shared.messaging import Inbox, Outbox
from shared.settings import Settings
from tests.integration.test_offset_commits import status_changed
from tests.support import PATIENCE_SECONDS


class CountedBatches(EventConsumer):
    """The shared consumer, noting the size of every batch of records it applies together."""

    def __init__(self, *arguments: Any) -> None:
        super().__init__(*arguments)
        self.batches: list[int] = []

    async def _apply_batch(self, records: list[ConsumerRecord]) -> None:
        self.batches.append(len(records))
        await super()._apply_batch(records)


@dataclass
class Running:
    """A counting consumer of the escalations topic, running, with the producer feeding it and
    the ids of the events it applied, in order."""

    consumer: CountedBatches
    producer: AIOKafkaProducer
    applied: list[uuid.UUID]
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Tell the consumer to stop; it has within the suite's patience."""
        self.consumer.request_stop()
        async with asyncio.timeout(PATIENCE_SECONDS):
            await self.task


@pytest.fixture
async def running(
    infra_settings: Settings,
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> AsyncIterator[Running]:
    sessions, _, inbox = scratch_schema
    group = f"test.linger-{uuid.uuid4().hex[:8]}"
    applied: list[uuid.UUID] = []

    async def remember(_: AsyncSession, event: CloudEvent, __: RecordPosition) -> None:
        applied.append(event.id)

    escalation_types = [t for t, spec in EVENT_TYPES.items() if spec.topic == topics.ESCALATIONS]
    producer = create_producer(infra_settings, group)
    await producer.start()
    consumer = CountedBatches(
        group,
        [topics.ESCALATIONS],
        HandlerTable.of(remember, escalation_types),
        sessions,
        Inbox(inbox, group),
        producer,
        infra_settings.model_copy(update={"kafka_commit_interval_ms": 0}),
    )
    task = asyncio.create_task(consumer.run())
    try:
        yield Running(consumer, producer, applied, task)
    finally:
        consumer.request_stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()


async def send_one_after_another(producer: AIOKafkaProducer, events: list[CloudEvent]) -> None:
    for event in events:
        await producer.send_and_wait(
            topics.ESCALATIONS, value=event.value(), key=b"one-incident", headers=event.headers()
        )


async def until(condition: Any) -> None:
    async with asyncio.timeout(PATIENCE_SECONDS):
        while not condition():
            await asyncio.sleep(0.02)


async def test_records_arriving_within_the_linger_are_one_batch_in_their_order(
    running: Running,
) -> None:
    consumer, producer, applied = running.consumer, running.producer, running.applied
    # The consumer in its group and fetching first: one record, applied at once.
    await send_one_after_another(producer, [status_changed()])
    await until(lambda: len(applied) == 1)
    # Far longer than any machine takes to produce three records, or than the test waits for
    # the consumer to stop: the batch ends when it is full, the linger when it is told to stop.
    consumer.linger_seconds = 10 * PATIENCE_SECONDS
    consumer.batch_max_records = 3
    first = [status_changed() for _ in range(3)]
    for event in first:
        await send_one_after_another(producer, [event])
        # Apart by more than the broker holds a fetch: without the linger, fetches of their
        # own. The linger outlasts any pause of this machine.
        await asyncio.sleep(0.3)
    await until(lambda: len(applied) == 4)
    # One more, alone: the consumer lingers on it once it has it.
    await send_one_after_another(producer, [status_changed()])
    await asyncio.sleep(0.5)  # time to fetch it; the assertions hold either way
    await running.stop()
    # A record alone is applied on its own, not as a batch: the first, and the late one.
    assert consumer.batches == [3]
    assert applied[1:4] == [event.id for event in first]


async def test_a_consumer_that_does_not_linger_applies_what_each_fetch_brought(
    running: Running,
) -> None:
    for _ in range(2):
        event = status_changed()
        await send_one_after_another(running.producer, [event])
        # Applied without a second record to fill the batch.
        await until(lambda event=event: event.id in running.applied)
    await running.stop()
    assert running.consumer.linger_seconds == 0
