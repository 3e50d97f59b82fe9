"""An idle consumer pauses between looks and still reads every record, in order, on the real
broker (shared/kafka.py IdleFetching)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared import kafka
from shared.kafka import IdleFetching, connection_options, create_producer
from shared.settings import Settings
from tests.integration.helpers import new_topic

PATIENCE_SECONDS = 60


def reader(settings: Settings, fetch_max_wait_ms: int) -> AIOKafkaConsumer:
    """A consumer outside any group, from the start of what it is assigned."""
    return AIOKafkaConsumer(
        **connection_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
    )


async def test_an_idle_consumer_reads_every_record_sent_while_it_pauses(
    infra_settings: Settings,
) -> None:
    topic = await new_topic(infra_settings, prefix="test.idle", partitions=2)
    producer = create_producer(infra_settings, "test-idle-producer")
    consumer = reader(infra_settings, infra_settings.kafka_fetch_max_wait_ms)
    await producer.start()
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert len(partitions) == 2
        consumer.assign(partitions)
        fetching = IdleFetching(consumer, 300, infra_settings.kafka_fetch_max_wait_ms)
        stopping = asyncio.Event()
        sent: list[bytes] = []
        received: list[bytes] = []
        async with asyncio.timeout(PATIENCE_SECONDS):
            for number in range(3):
                # Quiet until the consumer pauses between looks.
                while fetching.pause_seconds(time.monotonic()) == 0:
                    for records in (await fetching.next_batches(stopping, 200, 500)).values():
                        received.extend(record.value for record in records)
                # A record sent while it pauses: fetched at a later look, not skipped.
                looking = asyncio.create_task(fetching.next_batches(stopping, 200, 500))
                value = f"record {number}".encode()
                await producer.send_and_wait(topic, value, key=b"one-partition")
                sent.append(value)
                batches = await looking
                while True:
                    for records in batches.values():
                        received.extend(record.value for record in records)
                    if len(received) == len(sent):
                        break
                    batches = await fetching.next_batches(stopping, 200, 500)
                assert fetching.pause_seconds(time.monotonic()) == 0, "awake after a record"
        assert received == sent
        assert not consumer.paused(), "a look leaves its partitions resumed"
    finally:
        await consumer.stop()
        await producer.stop()


async def test_a_look_lasts_until_the_broker_answers_however_slow_it_is(
    infra_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker (or a machine) slower than the look expects: here the broker holds each empty
    fetch for 300 ms while the look expects an answer within the 20 ms fetch wait. A look cut
    at its own time would pause before the answer came, and aiokafka drops what a paused
    partition was sent: on a busy machine every look would then miss the records. So a look
    ends only once the broker has answered, and reads a record sent while the consumer paused."""
    # However busy this machine is, a look gives up only after the test's own patience.
    monkeypatch.setattr(kafka, "LOOK_LIMIT_SECONDS", PATIENCE_SECONDS)
    topic = await new_topic(infra_settings, prefix="test.idle", partitions=1)
    producer = create_producer(infra_settings, "test-idle-slow-producer")
    consumer = reader(infra_settings, fetch_max_wait_ms=300)
    await producer.start()
    await consumer.start()
    try:
        await consumer.topics()
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        fetching = IdleFetching(consumer, 200, fetch_max_wait_ms=20)
        stopping = asyncio.Event()
        async with asyncio.timeout(PATIENCE_SECONDS):
            while fetching.pause_seconds(time.monotonic()) == 0:
                assert not await fetching.next_batches(stopping, 200, 500)
            before_the_look = int(time.time() * 1000)
            assert not await fetching.next_batches(stopping, 200, 500)
            answered = consumer.last_poll_timestamp(partition)
            assert answered is not None and answered >= before_the_look, "the look heard back"
            await producer.send_and_wait(topic, b"while it pauses")
            received: list[bytes] = []
            while not received:
                for records in (await fetching.next_batches(stopping, 200, 500)).values():
                    received.extend(record.value for record in records)
        assert received == [b"while it pauses"]
    finally:
        await consumer.stop()
        await producer.stop()
