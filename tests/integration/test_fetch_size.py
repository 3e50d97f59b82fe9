"""A consumer's fetch brings a bounded amount of records, and still every record, in order, on
the real broker: one larger than the bounds comes too (shared/kafka.py fetch_options)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka import connection_options, create_producer, fetch_options
from shared.settings import Settings
from tests.integration.helpers import new_topic

PATIENCE_MS = 60_000
FETCH_BYTES = 16 * 1024
RECORDS = 60


async def test_a_consumer_behind_fetches_a_bounded_amount_and_still_every_record(
    infra_settings: Settings,
) -> None:
    settings = infra_settings.model_copy(
        update={
            "kafka_fetch_max_bytes": FETCH_BYTES,
            "kafka_max_partition_fetch_bytes": FETCH_BYTES,
        }
    )
    topic = await new_topic(settings, partitions=1, prefix="test.fetch-size")
    # Written before the consumer starts, each its own record batch, as a relay's passes are:
    # together ten times what one fetch may bring, and one record twice that alone.
    values = [f"{number:04d}".encode() + b"x" * 2_700 for number in range(RECORDS)]
    values.insert(RECORDS // 2, b"large" + b"y" * (2 * FETCH_BYTES))
    producer = create_producer(settings, "test-fetch-size-producer")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **fetch_options(settings),
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        received: list[bytes] = []
        fetched_sizes: list[int] = []
        while len(received) < len(values):
            batches = await consumer.getmany(timeout_ms=PATIENCE_MS)
            assert batches, "a fetch brought nothing within a minute"
            for records in batches.values():
                fetched_sizes.append(sum(len(record.value or b"") for record in records))
                received.extend(record.value or b"" for record in records)
    finally:
        await consumer.stop()

    assert received == values
    # Bounded: the backlog came in many fetches, none past the bound by more than the one
    # record batch that crossed it (Tansu ends a fetch after that batch; Apache Kafka before
    # it), and the record larger than the bound came all the same.
    assert len(fetched_sizes) >= 10
    largest_record = max(len(value) for value in values)
    assert max(fetched_sizes) <= FETCH_BYTES + largest_record
    assert sorted(fetched_sizes)[-2] <= FETCH_BYTES + len(values[0])
