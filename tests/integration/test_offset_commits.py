"""A consumer commits the offsets it applied at its commit interval, before a rebalance takes
partitions away, and when it stops: the group's next member starts where it stopped. Between
commits a crash reads records again, which the inbox absorbs (tests/integration/
test_inbox_batches.py). Real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import EVENT_TYPES, CloudEvent, topics
from shared.kafka import (
    EventConsumer,
    EventHandler,
    HandlerTable,
    RecordPosition,
    RejoinOverdue,
    _RebalanceLog,
    create_producer,
)
from shared.messaging import Inbox, Outbox
from shared.settings import Settings
from tests.integration.helpers import eventually, status_changed
from tests.support import PATIENCE_SECONDS

Consumer = TypeVar("Consumer", bound=EventConsumer)


def escalations_consumer(
    consumer_type: type[Consumer],
    group: str,
    handler: EventHandler,
    sessions: async_sessionmaker[AsyncSession],
    inbox: Table,
    producer: AIOKafkaProducer,
    settings: Settings,
) -> Consumer:
    """A consumer of escalations.v1 in its own group, handing every type of it to `handler`."""
    escalation_types = [t for t, spec in EVENT_TYPES.items() if spec.topic == topics.ESCALATIONS]
    return consumer_type(
        group,
        [topics.ESCALATIONS],
        HandlerTable.of(handler, escalation_types),
        sessions,
        Inbox(inbox, group),
        producer,
        settings,
    )


async def committed(settings: Settings, group: str, partition: TopicPartition) -> int | None:
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group)
    await reader.start()
    try:
        return await reader.committed(partition)
    finally:
        await reader.stop()


async def test_a_stopping_consumer_commits_what_it_applied_within_its_interval(
    infra_settings: Settings,
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    sessions, _, inbox = scratch_schema
    group = f"test.commits-{uuid.uuid4().hex[:8]}"
    events = [status_changed() for _ in range(3)]
    ours = {event.id for event in events}
    applied: dict[uuid.UUID, RecordPosition] = {}

    async def remember(_: AsyncSession, event: CloudEvent, position: RecordPosition) -> None:
        if event.id in ours:
            applied[event.id] = position

    # An hour's interval: only the stop commits.
    settings = infra_settings.model_copy(update={"kafka_commit_interval_ms": 3_600_000})
    producer = create_producer(settings, group)
    await producer.start()
    consumer = escalations_consumer(
        EventConsumer, group, remember, sessions, inbox, producer, settings
    )
    running = asyncio.create_task(consumer.run())
    try:
        for event in events:
            await producer.send_and_wait(
                topics.ESCALATIONS, value=event.value(), key=event.key, headers=event.headers()
            )
        async with asyncio.timeout(PATIENCE_SECONDS):
            while len(applied) < len(events):
                await asyncio.sleep(0.05)
        last = {
            TopicPartition(position.topic, position.partition): position.offset
            for position in sorted(applied.values(), key=lambda p: p.offset)
        }
        for partition in last:
            assert await committed(settings, group, partition) is None  # the interval runs
        consumer.request_stop()
        async with asyncio.timeout(PATIENCE_SECONDS):
            await running
        for partition, offset in last.items():
            assert await committed(settings, group, partition) == offset + 1
    finally:
        consumer.request_stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await producer.stop()


async def test_partitions_taken_away_are_committed_first() -> None:
    commits: list[str] = []

    async def commit() -> None:
        commits.append("committed")

    listener = _RebalanceLog("test.rebalance", commit)
    await listener.on_partitions_revoked(set())
    assert commits == []  # nothing taken away: nothing to commit
    await listener.on_partitions_revoked({TopicPartition(topics.ESCALATIONS, 2)})
    assert commits == ["committed"]


async def test_a_commit_that_cannot_be_made_before_partitions_are_taken_is_given_up() -> None:
    """The group is rejoined only once the listener returns: a commit waiting for a coordinator
    that is being found again (a broker restarted empty) must not hold the consumer out of its
    group for ever. Its records are read again by their next owner, and absorbed."""
    never = asyncio.Event()
    began = asyncio.Event()

    async def commit_waiting_for_ever() -> None:
        began.set()
        await never.wait()

    listener = _RebalanceLog("test.rebalance", commit_waiting_for_ever, commit_limit_seconds=0.05)
    await listener.on_partitions_revoked({TopicPartition(topics.ESCALATIONS, 2)})
    assert began.is_set() and not never.is_set()


class RebalancedMeanwhile:
    """aiokafka's consumer when the group rebalanced while a commit was under way."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        raise CommitFailedError("the group has already rebalanced")


async def test_a_commit_the_group_rebalanced_under_is_made_next_time_and_the_consumer_goes_on(
    infra_settings: Settings,
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    """Seen after a broker restarted empty: the commit failed, the consumer stopped, and started
    again as a new member. Now the offsets wait for the next commit, of partitions still held."""
    sessions, _, inbox = scratch_schema

    async def ignore(*_: object) -> None:
        return None

    consumer = escalations_consumer(
        EventConsumer,
        "test.rebalanced",
        ignore,
        sessions,
        inbox,
        create_producer(infra_settings, "test.rebalanced"),  # never started: nothing is sent
        infra_settings,
    )
    partition = TopicPartition(topics.ESCALATIONS, 2)
    consumer._consumer = RebalancedMeanwhile({partition})
    consumer._applied = {partition: 5}
    await consumer._commit_applied()
    assert consumer._applied == {partition: 5}


async def test_a_consumer_whose_rebalance_does_not_end_starts_again_as_a_new_member(
    infra_settings: Settings,
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    """Partitions taken away and not given again within KAFKA_REJOIN_LIMIT_SECONDS: the consumer
    stops with `RejoinOverdue` (its supervisor runs it again), and run again it joins the group
    and applies what comes."""
    sessions, _, inbox = scratch_schema
    group = f"test.rejoin-{uuid.uuid4().hex[:8]}"
    applied: list[uuid.UUID] = []

    async def remember(_: AsyncSession, event: CloudEvent, __: RecordPosition) -> None:
        applied.append(event.id)

    settings = infra_settings.model_copy(
        update={
            "kafka_rejoin_limit_seconds": 1.0,
            # The member left behind holds the next join up until its session ends.
            "kafka_session_timeout_ms": 2000,
            "kafka_heartbeat_interval_ms": 500,
        }
    )
    producer = create_producer(settings, group)
    await producer.start()
    consumer = escalations_consumer(
        EventConsumer, group, remember, sessions, inbox, producer, settings
    )
    try:
        running = asyncio.create_task(consumer.run())
        await applied_once_sent(producer, applied)  # in the group, its partitions given
        # A rebalance that takes the partitions and never gives them back.
        await consumer.rebalances.on_partitions_revoked(set())
        with pytest.raises(RejoinOverdue):
            async with asyncio.timeout(PATIENCE_SECONDS):
                await running

        running = asyncio.create_task(consumer.run())
        await applied_once_sent(producer, applied)
    finally:
        consumer.request_stop()
        await asyncio.gather(running, return_exceptions=True)
        await producer.stop()


async def applied_once_sent(producer: AIOKafkaProducer, applied: list[uuid.UUID]) -> None:
    event = status_changed()
    await producer.send_and_wait(
        topics.ESCALATIONS, value=event.value(), key=event.key, headers=event.headers()
    )
    await eventually(lambda: asyncio.sleep(0, applied), lambda seen: event.id in seen)
