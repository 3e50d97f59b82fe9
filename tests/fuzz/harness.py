"""One service's consumer, as its `create_app` builds it, fed records by hand.

`EventConsumer.process` gets the records straight (no group, no fetch), on the real PostgreSQL
with the service's migrated schema and a real producer for the dead-letter topics. `DeadLetters`
reads those topics back, so a record counts as dead-lettered only once it is on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from hypothesis import currently_in_test_context, event
from sqlalchemy import Row, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import decode
from shared.events.topics import ALL_TOPICS, dead_letter_topic
from shared.kafka import EventConsumer
from shared.messaging import Inbox
from shared.settings import Settings
from tests.support import PATIENCE_SECONDS
from tools.contracts import build_service

OUTCOMES = ("applied", "duplicate", "ignored", "dead-lettered")

# (consumer group, original topic, partition, offset)
LetterKey = tuple[str, str, int, int]


@dataclass(frozen=True)
class Record:
    """The fields of an aiokafka `ConsumerRecord` that `EventConsumer.process` reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]

    def header_or_none(self, name: str) -> str | None:
        try:
            return self.header(name)
        except UnicodeDecodeError:
            return None

    def header(self, name: str) -> str | None:
        """The value decoding sees: the last header of that name."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found.decode() if found is not None else None


class DeadLetters:
    """Every record of the four `.dlq` topics, read as it arrives, by where it came from."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers
        self.reasons: dict[LetterKey, str] = {}
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._reader: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._reader = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            group_id=None,
            # The broker answers a fetch at once when records are there, else after this: short,
            # so a test waiting for a dead letter waits for the record, not for the poll.
            fetch_max_wait_ms=20,
        )
        await self._reader.start()
        await self._reader.topics()
        partitions = [
            TopicPartition(dead_letter_topic(topic), number)
            for topic in ALL_TOPICS
            for number in sorted(self._reader.partitions_for_topic(dead_letter_topic(topic)) or ())
        ]
        self._reader.assign(partitions)
        await self._reader.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._read(), name="dead-letter reader")

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            batches = await self._reader.getmany(timeout_ms=50)
            for records in batches.values():
                for record in records:
                    headers = {
                        name: (value or b"").decode(errors="replace")
                        for name, value in record.headers
                    }
                    key = (
                        headers["dlq_consumer"],
                        headers["dlq_original_topic"],
                        int(headers["dlq_original_partition"]),
                        int(headers["dlq_original_offset"]),
                    )
                    self.reasons[key] = headers["dlq_reason"]
            if batches:
                self._arrived.set()

    async def wait_for(self, keys: Iterable[LetterKey], timeout: float = PATIENCE_SECONDS) -> None:
        wanted = set(keys)
        try:
            async with asyncio.timeout(timeout):
                while missing := wanted - self.reasons.keys():
                    if self._task is not None and self._task.done():
                        self._task.result()  # the reader failed: say why, not "missing"
                    self._arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._arrived.wait(), 0.5)
        except TimeoutError:
            raise AssertionError(f"not on the dead-letter topics: {sorted(missing)}") from None
        for key in wanted:
            assert self.reasons[key].strip(), f"dead letter {key} has no reason"

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._reader is not None:
            await self._reader.stop()


@dataclass
class ConsumerUnderTest:
    """A consumer group of one service and what became of every record it was given."""

    consumer: EventConsumer
    inbox: Table
    sessions: async_sessionmaker[AsyncSession]
    offsets: itertools.count
    dead_lettered: list[LetterKey] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    @property
    def group(self) -> str:
        return self.consumer.name

    @property
    def topics(self) -> tuple[str, ...]:
        return self.consumer.topics

    def record(
        self,
        topic: str,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
        key: bytes | None = None,
        partition: int = 0,
    ) -> Record:
        """A record at an offset no other record of this run had."""
        return Record(topic, partition, next(self.offsets), key, value, headers)

    async def land(self, record: Record) -> str:
        """Process one record and check where it landed: in the inbox, or on the DLQ."""
        outcome = await self.consumer.process(record)  # type: ignore[arg-type]
        assert outcome in OUTCOMES, outcome
        self.outcomes[outcome] += 1
        if currently_in_test_context():
            # `pytest --hypothesis-show-statistics` tells how often each type landed which way.
            event(f"{record.header_or_none('ce_type')}: {outcome}")
        if outcome == "dead-lettered":
            self.dead_lettered.append((self.group, record.topic, record.partition, record.offset))
            return outcome
        if outcome == "ignored":
            # A type the consumer reads past on purpose leaves no trace. It is told by its
            # header alone: the rest of the record is never read, whatever it holds. Of a
            # handled type, only an event that asks nothing of the consumer is read past.
            handlers = self.consumer.handlers
            if record.header("ce_type") not in handlers.ignored:
                decoded = decode(record.topic, record.headers, record.value)
                assert handlers.handler_of(decoded) is None, record
            assert await self.inbox_rows_at(record) == 0, f"ignored but in the inbox: {record}"
            return outcome
        row = await self.inbox_row(record.header("ce_source"), UUID(str(record.header("ce_id"))))
        assert row is not None, f"{outcome} but not in {self.inbox.schema}.inbox: {record}"
        assert row.consumer == self.group
        if outcome == "applied":
            assert (row.topic, row.partition, row.offset) == (
                record.topic,
                record.partition,
                record.offset,
            )
        return outcome

    async def inbox_row(self, source: str | None, event_id: UUID) -> Row | None:
        async with self.sessions() as session:
            return (
                await session.execute(
                    select(self.inbox).where(
                        self.inbox.c.ce_source == source, self.inbox.c.ce_id == event_id
                    )
                )
            ).first()

    async def inbox_rows_at(self, record: Record) -> int:
        """How many inbox rows of this consumer name the record's position."""
        async with self.sessions() as session:
            return int(
                await session.scalar(
                    select(func.count())
                    .select_from(self.inbox)
                    .where(
                        self.inbox.c.consumer == self.group,
                        self.inbox.c.topic == record.topic,
                        self.inbox.c.partition == record.partition,
                        self.inbox.c.offset == record.offset,
                    )
                )
                or 0
            )

    async def settle(self, letters: DeadLetters) -> None:
        """Every record dead-lettered so far is on its `.dlq` topic with a reason."""
        await letters.wait_for(self.dead_lettered)


def consumer_under_test(
    settings: Settings,
    service: str,
    group: str,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    offsets: itertools.count,
) -> ConsumerUnderTest:
    """The group's consumer with the handler `create_app` gives it, and the service's inbox."""
    _, specs = build_service(service, settings)
    spec = next(spec for spec in specs if spec.group == group)
    inbox = importlib.import_module(f"services.{service}.models").messaging.inbox_table
    consumer = EventConsumer(
        spec.group, spec.topics, spec.handlers, sessions, Inbox(inbox, group), producer, settings
    )
    return ConsumerUnderTest(consumer, inbox, sessions, offsets)
