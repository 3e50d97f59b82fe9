"""Poison records for every topic, and reading back what the dead-letter topics hold."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.events.envelope import CONTENT_TYPE, SPEC_VERSION
from shared.events.registry import EVENT_TYPES
from shared.events.topics import ALL_TOPICS, dead_letter_topic

# Where a record sat: (topic, partition, offset).
Position = tuple[str, int, int]


@dataclass(frozen=True)
class PoisonRecord:
    kind: str
    position: Position
    # The type its header names, if any: a consumer that ignores the type reads it past.
    ce_type: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    consumer: str
    reason: str
    original: Position


def envelope(ce_type: str) -> list[tuple[str, bytes]]:
    """Headers of a well-formed CloudEvent of `ce_type`."""
    attributes = {
        "ce_specversion": SPEC_VERSION,
        "ce_id": str(uuid.uuid4()),
        "ce_source": "fault-injection",
        "ce_type": ce_type,
        "ce_time": datetime.now(UTC).isoformat(),
        "ce_subject": str(uuid.uuid4()),
        "content-type": CONTENT_TYPE,
    }
    return [(name, value.encode()) for name, value in attributes.items()]


def poison_for(topic: str) -> list[tuple[str, bytes, list[tuple[str, bytes]]]]:
    """(kind, value, headers): bytes that are no event, a known type whose data breaks its
    schema, and a well-formed envelope of a type nobody knows."""
    known_type = next(name for name, spec in EVENT_TYPES.items() if spec.topic == topic)
    return [
        ("undecodable", b"\xff\xfe\x00 not an event \xc3\x28", []),
        ("wrong schema", b'{"incident_id": 42, "unexpected": true}', envelope(known_type)),
        ("unknown type", b"{}", envelope("poison.never-registered")),
    ]


async def produce_poison(bootstrap_servers: str) -> list[PoisonRecord]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    produced = []
    try:
        for topic in ALL_TOPICS:
            for kind, value, headers in poison_for(topic):
                sent = await producer.send_and_wait(
                    topic, value=value, key=uuid.uuid4().bytes, headers=headers
                )
                named = dict(headers).get("ce_type")
                produced.append(
                    PoisonRecord(
                        kind,
                        (topic, sent.partition, sent.offset),
                        named.decode() if named is not None else None,
                    )
                )
    finally:
        await producer.stop()
    return produced


async def dead_letters(bootstrap_servers: str) -> list[DeadLetter]:
    """Every record of every dead-letter topic, read to the end."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None
    )
    await reader.start()
    letters = []
    try:
        await reader.topics()
        partitions = [
            TopicPartition(dead_letter_topic(topic), number)
            for topic in ALL_TOPICS
            for number in sorted(reader.partitions_for_topic(dead_letter_topic(topic)) or ())
        ]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        remaining = {partition for partition in partitions if ends[partition] > 0}
        while remaining:
            batches = await reader.getmany(*remaining, timeout_ms=1000)
            for partition, records in batches.items():
                for record in records:
                    headers = {
                        name: value.decode(errors="replace") for name, value in record.headers or ()
                    }
                    letters.append(
                        DeadLetter(
                            consumer=headers.get("dlq_consumer", ""),
                            reason=headers.get("dlq_reason", ""),
                            original=(
                                headers.get("dlq_original_topic", ""),
                                int(headers.get("dlq_original_partition", -1)),
                                int(headers.get("dlq_original_offset", -1)),
                            ),
                        )
                    )
                if await reader.position(partition) >= ends[partition]:
                    remaining.discard(partition)
    finally:
        await reader.stop()
    return letters
