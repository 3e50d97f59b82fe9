"""A consumer that lingers (`EventConsumer.linger_seconds`, audit's `AUDIT_BATCH_LINGER_MS`)
lets the records it fetched wait for more, up to its batch's size (`KAFKA_BATCH_MAX_RECORDS`):
records produced one after another are applied as one batch, in their order; a batch that
fills is applied at once; and a lingering consumer told to stop applies what it holds and
stops, without waiting out its linger. One that does not linger leaves no record waiting.
Real broker and PostgreSQL; the topic is the suite's, so other tests' records may join ours,
and only ours are counted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import CloudEvent, topics
from shared.kafka import EventConsumer, RecordPosition, create_producer
from shared.messaging import Outbox
from shared.settings import Settings
from tests.integration.helpers import status_changed
from tests.integration.test_offset_commits import escalations_consumer
from tests.support import PATIENCE_SECONDS

# `KAFKA_BATCH_MAX_RECORDS` of these tests' consumer.
BATCH_MAX_RECORDS = 4


class WatchedConsumer(EventConsumer):
    """The shared consumer, showing the batch it lingers on as it grows, and noting the events
    of every batch of records it applies together."""

    def __init__(self, *arguments: Any) -> None:
        super().__init__(*arguments)
        self.lingering: dict[TopicPartition, list[ConsumerRecord]] = {}
        self.batches: list[list[ConsumerRecord]] = []

    async def _lingered(
        self, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.lingering = batches  # the same dict the linger adds to
        return await super()._lingered(batches)

    async def _apply_batch(self, records: list[ConsumerRecord]) -> None:
        self.batches.append(records)
        await super()._apply_batch(records)


@dataclass
class Running:
    """A watched consumer of the escalations topic, running, with the producer feeding it and
    the ids of the test's own events it applied, in order."""

    consumer: WatchedConsumer
    producer: AIOKafkaProducer
    task: asyncio.Task[None]
    ours: set[uuid.UUID] = field(default_factory=set)
    applied: list[uuid.UUID] = field(default_factory=list)

    async def send(self, event: CloudEvent) -> None:
        self.ours.add(event.id)
        await self.producer.send_and_wait(
            topics.ESCALATIONS, value=event.value(), key=b"linger-test", headers=event.headers()
        )

    def held(self, records: list[ConsumerRecord]) -> list[uuid.UUID]:
        """Our events among `records`, in order."""
        ids = [uuid.UUID(dict(record.headers)["ce_id"].decode()) for record in records]
        return [event_id for event_id in ids if event_id in self.ours]

    def lingering_on(self) -> list[uuid.UUID]:
        """Our events in the batch the consumer lingers on."""
        return self.held([r for records in self.consumer.lingering.values() for r in records])

    async def stop(self) -> None:
        """Tell the consumer to stop; it has within the suite's patience."""
        self.consumer.request_stop()
        async with asyncio.timeout(PATIENCE_SECONDS):
            await self.task


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(PATIENCE_SECONDS):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture
async def running(
    infra_settings: Settings,
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> AsyncIterator[Running]:
    sessions, _, inbox = scratch_schema
    group = f"test.linger-{uuid.uuid4().hex[:8]}"
    producer = create_producer(infra_settings, group)
    await producer.start()
    watch: list[Running] = []

    async def remember(_: AsyncSession, event: CloudEvent, __: RecordPosition) -> None:
        if event.id in watch[0].ours:
            watch[0].applied.append(event.id)

    consumer = escalations_consumer(
        WatchedConsumer,
        group,
        remember,
        sessions,
        inbox,
        producer,
        infra_settings.model_copy(
            update={"kafka_commit_interval_ms": 0, "kafka_batch_max_records": BATCH_MAX_RECORDS}
        ),
    )
    watch.append(Running(consumer, producer, asyncio.create_task(consumer.run())))
    try:
        yield watch[0]
    finally:
        consumer.request_stop()
        watch[0].task.cancel()
        await asyncio.gather(watch[0].task, return_exceptions=True)
        await producer.stop()


async def test_records_arriving_within_the_linger_are_one_batch_in_their_order(
    running: Running,
) -> None:
    consumer = running.consumer
    # The consumer in its group, read up to the topic's end, and fetching: one record, applied.
    first = status_changed()
    await running.send(first)
    await until(lambda: first.id in running.applied)
    # Far longer than the test waits for anything: the batch ends when the consumer is told
    # to stop, and room enough that other tests' records on the topic do not fill it first.
    consumer.linger_seconds = 10 * PATIENCE_SECONDS
    consumer.batch_max_records = 16 * BATCH_MAX_RECORDS
    together = [status_changed() for _ in range(3)]
    await running.send(together[0])
    await until(lambda: running.lingering_on() == [together[0].id])
    for event in together[1:]:
        await running.send(event)
    expected = [event.id for event in together]
    await until(lambda: running.lingering_on() == expected)
    assert running.applied == [first.id]  # held, not applied, while the consumer lingers
    await running.stop()
    assert running.applied == [first.id, *expected]
    holding = [running.held(batch) for batch in consumer.batches]
    assert [held for held in holding if set(held) & set(expected)] == [expected]


async def test_a_consumer_that_does_not_linger_applies_what_each_fetch_brought(
    running: Running,
) -> None:
    for _ in range(2):
        event = status_changed()
        await running.send(event)
        # Applied without a second record to fill the batch.
        await until(lambda event=event: event.id in running.applied)
    await running.stop()
    assert running.consumer.linger_seconds == 0


async def test_a_full_batch_is_applied_at_once_however_long_the_linger(running: Running) -> None:
    consumer = running.consumer
    assert consumer.batch_max_records == BATCH_MAX_RECORDS
    first = status_changed()
    await running.send(first)
    await until(lambda: first.id in running.applied)
    consumer.linger_seconds = 10 * PATIENCE_SECONDS
    backlog = [status_changed() for _ in range(BATCH_MAX_RECORDS + 2)]
    for event in backlog:
        await running.send(event)
    # Only a batch that filled ends before the linger does, which is beyond this wait.
    await until(lambda: len(running.applied) > 1)
    await running.stop()
    sent = [event.id for event in backlog]
    # Other tests' records on the suite's topic may fill the batch beside ours, so it is the
    # batch's size that shows it filled, and ours are applied in their order up to where the
    # consumer stopped.
    reached = [batch for batch in consumer.batches if set(running.held(batch)) & set(sent)]
    assert len(reached[0]) == BATCH_MAX_RECORDS
    assert all(len(batch) <= BATCH_MAX_RECORDS for batch in consumer.batches)
    assert running.applied == [first.id, *sent[: len(running.applied) - 1]]
