"""Replay dead letters: read `<topic>.dlq`, put each record back on its topic, unchanged.

Run once the cause is fixed (a bug deployed, a missing incident now known):
`sqjz-dlq-replay incidents.v1 --consumer escalation.incidents [--dry-run]`. Consumers are
idempotent, so a record replayed twice, or one that some consumer had applied, changes nothing.
Replay is at-least-once: the replayer's own group offset is committed after each record. Each
consumer named has a replay group of its own (`dlq-replay.<topic>.<consumer>`): replaying one
consumer's dead letters never commits past another's, which stay for their own replay.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events.topics import ALL_TOPICS, dead_letter_topic
from shared.kafka import connection_options, create_producer
from shared.settings import Settings

log = logging.getLogger(__name__)
DLQ_HEADERS = frozenset(
    {
        "dlq_reason",
        "dlq_consumer",
        "dlq_original_topic",
        "dlq_original_partition",
        "dlq_original_offset",
        "dlq_failed_at",
        "dlq_value_truncated_from",
    }
)


def replay_group(topic: str, consumer: str | None) -> str:
    """The replayer's consumer group: one per consumer whose dead letters it replays."""
    return f"dlq-replay.{topic}.{consumer or 'every-consumer'}"


async def replay(
    settings: Settings, topic: str, consumer: str | None, dry_run: bool, idle_seconds: float = 3.0
) -> int:
    """Replay the dead letters of `topic` (only `consumer`'s, if named); returns how many."""
    # Assigned, not subscribed: no group rebalance to wait for, yet offsets are the group's.
    reader = AIOKafkaConsumer(
        **connection_options(settings),
        group_id=replay_group(topic, consumer),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = create_producer(settings, client_id="dlq-replay")
    await reader.start()
    await producer.start()
    await reader.topics()  # loads the metadata partitions_for_topic reads
    reader.assign(
        [
            TopicPartition(dead_letter_topic(topic), number)
            for number in sorted(reader.partitions_for_topic(dead_letter_topic(topic)) or ())
        ]
    )
    replayed = 0
    try:
        while batches := await reader.getmany(timeout_ms=int(idle_seconds * 1000)):
            for partition, records in batches.items():
                for record in records:
                    headers = dict(record.headers or ())
                    reason = headers.get("dlq_reason", b"").decode(errors="replace")
                    who = headers.get("dlq_consumer", b"").decode(errors="replace")
                    if "dlq_value_truncated_from" in headers:
                        # Too large to keep whole: replay it from its original position.
                        print(
                            f"not replayable (value truncated) {partition}@{record.offset}: "
                            f"the original is at {headers['dlq_original_topic'].decode()}"
                            f"[{headers['dlq_original_partition'].decode()}]@"
                            f"{headers['dlq_original_offset'].decode()}"
                        )
                    elif consumer is None or who == consumer:
                        print(
                            f"{'would replay' if dry_run else 'replay'} {partition}@"
                            f"{record.offset} ({who}): {reason}"
                        )
                        if not dry_run:
                            await producer.send_and_wait(
                                topic,
                                value=record.value,
                                key=record.key,
                                headers=[
                                    (name, value)
                                    for name, value in record.headers or ()
                                    if name not in DLQ_HEADERS
                                ],
                            )
                        replayed += 1
                    if not dry_run:
                        await reader.commit({partition: record.offset + 1})
    finally:
        await reader.stop()
        await producer.stop()
    return replayed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sqjz-dlq-replay", description=__doc__.splitlines()[0])
    parser.add_argument("topic", choices=ALL_TOPICS)
    parser.add_argument("--consumer", help="only the dead letters of this consumer group")
    parser.add_argument("--dry-run", action="store_true", help="list, change nothing")
    arguments = parser.parse_args(argv)
    count = asyncio.run(replay(Settings(), arguments.topic, arguments.consumer, arguments.dry_run))
    print(f"{count} record(s) {'listed' if arguments.dry_run else 'replayed'}")


if __name__ == "__main__":
    main()
