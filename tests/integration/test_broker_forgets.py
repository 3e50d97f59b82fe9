"""A broker that forgets (shared/messaging.py): the relay notices a broker restarted empty and
publishes its retained rows again, in their order; a broker that kept everything is left alone
(however its end offsets read); rows past their retention are purged in batches. A consumer
given its partitions on the new broker reads them from their start, whatever offsets were
committed there (shared/kafka.py).

Each test has a broker of its own, killed at will; the database is the suite's."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from shared.events import CloudEvent, topics
from shared.kafka import EventConsumer, KafkaBrokerProbe, RecordPosition, create_producer
from shared.messaging import PURGE_BATCH, BrokerCheck, OutboxRelay, Retention, RetentionPurge
from shared.settings import Settings
from tests.integration.helpers import eventually, reported_event, status_changed
from tests.integration.test_offset_commits import committed, escalations_consumer
from tests.support import PATIENCE_SECONDS
from tools.localinfra import LocalBroker


@pytest.fixture
async def own_broker(infra_settings: Settings, work_dir: Path) -> AsyncIterator[LocalBroker]:
    broker = LocalBroker(work_dir / f"tansu-{uuid.uuid4().hex[:6]}.log", topics=infra_settings)
    await broker.start()
    yield broker
    await broker.stop()


def events_of_one_incident(count: int, like: CloudEvent | None = None) -> list[CloudEvent]:
    """`count` events as `like` (a report by default), each its own: keyed alike, so on one
    partition in their order."""
    first = like or reported_event()
    return [
        CloudEvent(uuid.uuid4(), first.source, first.type, first.subject, first.time, first.data)
        for _ in range(count)
    ]


async def read_back(bootstrap: str, expected: int) -> list[str]:
    """The ce_id of every record on incidents.v1, each partition in its order."""
    consumer = AIOKafkaConsumer(
        topics.INCIDENTS, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: list[tuple[int, int, str]] = []
    try:
        async with asyncio.timeout(PATIENCE_SECONDS):
            while len(seen) < expected:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    seen += [
                        (r.partition, r.offset, dict(r.headers)["ce_id"].decode()) for r in records
                    ]
    finally:
        await consumer.stop()
    return [ce_id for _, _, ce_id in sorted(seen)]


async def test_a_broker_restarted_empty_gets_every_retained_row_again_in_order(
    infra_settings: Settings, own_broker: LocalBroker, scratch_schema
) -> None:
    sessions, outbox, _ = scratch_schema
    settings = infra_settings.model_copy(
        update={"kafka_bootstrap_servers": own_broker.bootstrap_servers}
    )
    staged = events_of_one_incident(30)
    async with sessions() as session, session.begin():
        await outbox.add(session, *staged)
    producer = create_producer(settings, "test-forgets")
    await producer.start()
    probe = KafkaBrokerProbe(settings, "test-forgets")
    relay = OutboxRelay(
        outbox, sessions, producer, settings.plain_database_url, broker_check=BrokerCheck(probe)
    )
    try:
        assert await relay.check_broker() == 0
        assert await relay.publish_batch() == 30
        # Sent in one batch, the records share a produce request: Tansu's end offset of the
        # partition then reads short of them. The relay looks, and finds them all there.
        assert await relay.check_broker() == 0

        assert own_broker.process is not None
        forgotten = own_broker.cluster_id
        own_broker.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(own_broker.process.wait)
        await own_broker.start()
        assert own_broker.cluster_id != forgotten

        assert await relay.check_broker() == 30
        assert await relay.backlog() == 30
        while await relay.publish_batch():
            pass
        assert await relay.check_broker() == 0
    finally:
        await relay.close()
        await producer.stop()
        await probe.close()
    assert await read_back(own_broker.bootstrap_servers, 30) == [str(e.id) for e in staged]
    async with sessions() as session:
        placed = (
            await session.execute(
                text(
                    f'SELECT DISTINCT cluster_id FROM "{outbox.schema}".outbox '
                    "WHERE published_at IS NOT NULL"
                )
            )
        ).scalars()
        assert list(placed) == [own_broker.cluster_id]


async def test_rows_past_their_retention_are_purged_in_batches(scratch_schema) -> None:
    sessions, outbox, inbox = scratch_schema
    schema = outbox.schema
    old_sent, old_unsent, recent = PURGE_BATCH + 10, 5, 7
    async with sessions() as session, session.begin():
        for count, created, published in (
            (old_sent, "now() - interval '9 days'", "now() - interval '8 days'"),
            (old_unsent, "now() - interval '9 days'", "NULL"),
            (recent, "now()", "now()"),
        ):
            await session.execute(
                text(
                    f'INSERT INTO "{schema}".outbox (shard, topic, key, event_id, event_type, '
                    "headers, payload, created_at, published_at) "
                    f"SELECT 0, 'incidents.v1', 'k', gen_random_uuid(), 'incident.reported', "
                    f"'{{}}', '', {created}, {published} FROM generate_series(1, :count)"
                ),
                {"count": count},
            )
        await session.execute(
            text(
                f'INSERT INTO "{schema}".inbox (ce_source, ce_id, ce_type, consumer, topic, '
                '"partition", "offset", processed_at) '
                "SELECT 'intake', gen_random_uuid(), 'incident.reported', 'c', 'incidents.v1', "
                "0, n, now() - make_interval(days => n % 20) + interval '1 hour' "
                "FROM generate_series(0, 39) AS n"
            )
        )
    purge = RetentionPurge(
        sessions,
        [
            Retention(outbox.table, "published_at", timedelta(hours=168)),
            Retention(inbox, "processed_at", timedelta(hours=336)),
        ],
        interval=600,
    )
    # Inbox rows 15 to 19 days old (less an hour), twice over (n and n + 20): ten go.
    assert await purge.purge() == old_sent + 10
    assert await purge.purge() == 0
    async with sessions() as session:
        left = (
            await session.execute(
                text(f'SELECT count(*), count(published_at) FROM "{schema}".outbox')
            )
        ).one()
    assert tuple(left) == (old_unsent + recent, recent)


async def test_partitions_given_on_a_new_broker_are_read_from_their_start(
    infra_settings: Settings, own_broker: LocalBroker, scratch_schema
) -> None:
    """The member's offsets of the old broker reach the new one (its commit before the rebalance,
    which Tansu takes from a member it no longer knows), and the new broker's log starts again
    below them: the consumer reads every partition from its start rather than skip it."""
    sessions, _, inbox = scratch_schema
    settings = infra_settings.model_copy(
        update={
            "kafka_bootstrap_servers": own_broker.bootstrap_servers,
            "kafka_commit_interval_ms": 3_600_000,  # only the rebalance commits
        }
    )
    group = f"test.new-broker-{uuid.uuid4().hex[:8]}"
    applied: list[uuid.UUID] = []

    async def remember(_: object, event: CloudEvent, __: RecordPosition) -> None:
        applied.append(event.id)

    first = status_changed("before the broker is lost")
    before = events_of_one_incident(10, like=first)
    producer = create_producer(settings, group)
    await producer.start()
    probe = KafkaBrokerProbe(settings, group)
    consumer = escalations_consumer(
        EventConsumer, group, remember, sessions, inbox, producer, settings
    )
    consumer.follow_broker(probe)
    running = asyncio.create_task(consumer.run())
    try:
        for event in before:
            metadata = await producer.send_and_wait(
                topics.ESCALATIONS, value=event.value(), key=event.key, headers=event.headers()
            )
        partition = TopicPartition(topics.ESCALATIONS, metadata.partition)
        await eventually(lambda: asyncio.sleep(0, len(applied)), lambda n: n == len(before))

        assert own_broker.process is not None
        own_broker.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(own_broker.process.wait)
        await own_broker.start()

        after = events_of_one_incident(3, like=first)
        for event in after:
            await producer.send_and_wait(
                topics.ESCALATIONS, value=event.value(), key=event.key, headers=event.headers()
            )
        await eventually(
            lambda: asyncio.sleep(0, set(applied)), lambda seen: {e.id for e in after} <= seen
        )
        # Where the new log starts, committed for the next owner in place of the old broker's
        # 10 (the commit interval is an hour: nothing else commits meanwhile).
        assert await committed(settings, group, partition) == 0
    finally:
        consumer.request_stop()
        await asyncio.gather(running, return_exceptions=True)
        await producer.stop()
        await probe.close()
