"""A batch of records is applied in one transaction (`EventConsumer._apply_batch`) and claimed in
the inbox by the statement that writes what it staged: each handled event once, whatever repeats
it within the batch or before it (an event applied before fails the batch, which is then taken
apart and each record claimed before it is applied); ignored types leave no inbox row. What one
fetch brings from several partitions is one batch, its offsets committed together (at the commit
interval, or at once without one); a record that fails sends the partitions back one at a time,
where it is dead-lettered on its own. Real PostgreSQL, a scratch schema with an inbox; the
records are handed over as the broker would give them, to a stand-in for the Kafka consumer that
keeps the offsets committed."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from aiokafka import TopicPartition
from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import CloudEvent, topics
from shared.events.models import DeadlineMissed, IncidentStatusChanged
from shared.kafka import EventConsumer, HandlerTable, RecordPosition, RejectEvent
from shared.messaging import Inbox, InboxEntry, Outbox
from shared.settings import Settings
from shared.staging import when_ended
from tests.fuzz.harness import Record
from tests.integration.helpers import status_changed
from tests.support import CapturingProducer

GROUP = "intake.inbox-batch-test"
OFFSETS = itertools.count(1_000_000)


def record_of(event: CloudEvent, partition: int = 0) -> Record:
    return Record(
        topics.ESCALATIONS, partition, next(OFFSETS), event.key, event.value(), event.headers()
    )


class CommittingConsumer:
    """Stands in for the Kafka consumer of a group: keeps each commit it was asked for."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.assigned = {TopicPartition(topics.ESCALATIONS, p) for p in range(6)}

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        raise AssertionError(f"no record should be read again: {partition}@{offset}")


def reading_from(consumer: EventConsumer) -> CommittingConsumer:
    """The stand-in for the Kafka consumer that `consumer` reads from and commits to."""
    kafka = CommittingConsumer()
    consumer._consumer = kafka  # type: ignore[assignment]
    return kafka


def missed() -> CloudEvent:
    data = DeadlineMissed(
        obligation_id=uuid4(),
        incident_id=uuid4(),
        rule_id="R10",
        party="SFS:150626102",
        action="REPORT_TO_COUNTY",
        due_at=datetime.now(UTC),
        missed_at=datetime.now(UTC),
    )
    return CloudEvent.new("escalation", data, data.incident_id)


Scratch = tuple[async_sessionmaker[AsyncSession], Outbox, Table]


@pytest.fixture
def sessions(scratch_schema: Scratch) -> async_sessionmaker[AsyncSession]:
    return scratch_schema[0]


@pytest.fixture
def inbox(scratch_schema: Scratch) -> Inbox:
    return Inbox(scratch_schema[2], GROUP)


def consumer_applying(
    sessions: async_sessionmaker[AsyncSession],
    inbox: Inbox,
    settings: Settings,
    applied: list[tuple[UUID, RecordPosition]],
    refused: frozenset[UUID] = frozenset(),
) -> EventConsumer:
    async def remember(session: AsyncSession, event: CloudEvent, position: RecordPosition) -> None:
        if event.id in refused:
            raise RejectEvent("refused by the test")
        # What a handler does counts once its transaction committed: a batch rolled back and
        # taken apart has applied nothing.
        when_ended(session, lambda committed: committed and applied.append((event.id, position)))

    table = HandlerTable(
        {IncidentStatusChanged.ce_type: remember}, frozenset({DeadlineMissed.ce_type})
    )
    return EventConsumer(
        GROUP, (topics.ESCALATIONS,), table, sessions, inbox, CapturingProducer(), settings
    )


async def inbox_rows(
    sessions: async_sessionmaker[AsyncSession], inbox: Inbox, *events: CloudEvent
) -> dict[UUID, tuple[str, int]]:
    table = inbox.table
    async with sessions() as session:
        rows = await session.execute(
            select(table.c.ce_id, table.c.consumer, table.c.offset).where(
                table.c.ce_id.in_([event.id for event in events])
            )
        )
        return {row.ce_id: (row.consumer, row.offset) for row in rows}


async def test_a_batch_applies_each_handled_event_once(
    sessions: async_sessionmaker[AsyncSession], inbox: Inbox, infra_settings: Settings
) -> None:
    applied: list[tuple[UUID, RecordPosition]] = []
    consumer = consumer_applying(sessions, inbox, infra_settings, applied)
    reading_from(consumer)
    fresh, repeated, ignored = status_changed(), status_changed(), missed()
    first, again, other, read_past = (
        record_of(fresh),
        record_of(fresh),  # the same event twice in one batch (sent again by an outbox)
        record_of(repeated),
        record_of(ignored),
    )
    await consumer._apply_batch([first, again, other, read_past])  # type: ignore[list-item]

    assert applied == [
        (fresh.id, RecordPosition(first.topic, first.partition, first.offset)),
        (repeated.id, RecordPosition(other.topic, other.partition, other.offset)),
    ]
    rows = await inbox_rows(sessions, inbox, fresh, repeated, ignored)
    assert rows == {fresh.id: (GROUP, first.offset), repeated.id: (GROUP, other.offset)}

    # The whole batch again, as after a crash before its offsets were committed: the batch
    # fails on its claim, and record by record nothing is applied again.
    with pytest.raises(IntegrityError):
        await consumer._apply_batch([first, again, other, read_past])  # type: ignore[list-item]
    partition = TopicPartition(first.topic, first.partition)
    await consumer._process_partition(partition, [first, again, other, read_past])  # type: ignore[list-item]
    assert len(applied) == 2
    assert await inbox_rows(sessions, inbox, fresh, repeated, ignored) == rows


async def test_a_batch_with_an_event_applied_before_applies_the_others_once(
    sessions: async_sessionmaker[AsyncSession], inbox: Inbox, infra_settings: Settings
) -> None:
    applied: list[tuple[UUID, RecordPosition]] = []
    consumer = consumer_applying(sessions, inbox, infra_settings, applied)
    kafka = reading_from(consumer)
    seen_before, fresh = status_changed(), status_changed()
    earlier = record_of(seen_before)
    async with sessions() as session, session.begin():
        entry = InboxEntry.of(seen_before, earlier.topic, earlier.partition, earlier.offset)
        assert await inbox.claim_all(session, [entry]) == {(seen_before.source, seen_before.id)}

    other, new = record_of(seen_before), record_of(fresh)
    partition = TopicPartition(other.topic, other.partition)
    await consumer._process_partition(partition, [other, new])  # type: ignore[list-item]

    assert applied == [(fresh.id, RecordPosition(new.topic, new.partition, new.offset))]
    assert await inbox_rows(sessions, inbox, seen_before, fresh) == {
        seen_before.id: (GROUP, earlier.offset),
        fresh.id: (GROUP, new.offset),
    }
    await consumer._commit_applied()
    assert kafka.commits == [{partition: new.offset + 1}]


async def test_claim_all_of_nothing_asks_nothing(
    sessions: async_sessionmaker[AsyncSession], inbox: Inbox
) -> None:
    async with sessions() as session:
        assert await inbox.claim_all(session, []) == set()
        assert not session.in_transaction()


async def test_a_fetch_of_several_partitions_is_one_batch_and_one_commit(
    sessions: async_sessionmaker[AsyncSession], inbox: Inbox, infra_settings: Settings
) -> None:
    applied: list[tuple[UUID, RecordPosition]] = []
    consumer = consumer_applying(sessions, inbox, infra_settings, applied)
    kafka = reading_from(consumer)
    events = [status_changed() for _ in range(3)]
    on_0 = [record_of(events[0], 0), record_of(events[1], 0)]
    on_3 = [record_of(events[2], 3)]
    partitions = TopicPartition(topics.ESCALATIONS, 0), TopicPartition(topics.ESCALATIONS, 3)
    await consumer._process_fetched({partitions[0]: on_0, partitions[1]: on_3})  # type: ignore[dict-item]

    # Each partition's records in their order, each event once.
    assert [event_id for event_id, _ in applied] == [event.id for event in events]
    assert set(await inbox_rows(sessions, inbox, *events)) == {event.id for event in events}
    # Their offsets wait for the commit interval, then go in one request.
    assert kafka.commits == []
    await consumer._commit_applied()
    assert kafka.commits == [
        {partitions[0]: on_0[-1].offset + 1, partitions[1]: on_3[-1].offset + 1}
    ]
    await consumer._commit_applied()
    assert len(kafka.commits) == 1  # nothing applied since: nothing asked


async def test_without_a_commit_interval_each_fetch_is_committed_at_once(
    sessions: async_sessionmaker[AsyncSession], inbox: Inbox, infra_settings: Settings
) -> None:
    applied: list[tuple[UUID, RecordPosition]] = []
    settings = infra_settings.model_copy(update={"kafka_commit_interval_ms": 0})
    consumer = consumer_applying(sessions, inbox, settings, applied)
    kafka = reading_from(consumer)
    partition = TopicPartition(topics.ESCALATIONS, 1)
    for event in (status_changed(), status_changed()):
        record = record_of(event, 1)
        await consumer._process_fetched({partition: [record]})  # type: ignore[dict-item]
        assert kafka.commits[-1] == {partition: record.offset + 1}
    assert len(kafka.commits) == 2


async def test_a_record_that_fails_in_a_fetch_sends_the_partitions_back_one_at_a_time(
    sessions: async_sessionmaker[AsyncSession], inbox: Inbox, infra_settings: Settings
) -> None:
    good, bad = status_changed(), status_changed()
    applied: list[tuple[UUID, RecordPosition]] = []
    consumer = consumer_applying(
        sessions, inbox, infra_settings, applied, refused=frozenset({bad.id})
    )
    kafka = reading_from(consumer)
    kept, refused = record_of(good, 0), record_of(bad, 3)
    partitions = TopicPartition(topics.ESCALATIONS, 0), TopicPartition(topics.ESCALATIONS, 3)
    await consumer._process_fetched({partitions[0]: [kept], partitions[1]: [refused]})  # type: ignore[dict-item]

    # The batch of both was rolled back; each partition was then taken on its own, the good
    # record applied and the bad one dead-lettered: both are done, and committed together.
    await consumer._commit_applied()
    assert kafka.commits == [{partitions[0]: kept.offset + 1, partitions[1]: refused.offset + 1}]
    assert await inbox_rows(sessions, inbox, good, bad) == {good.id: (GROUP, kept.offset)}
    dead_letters = consumer._producer.sent  # type: ignore[attr-defined]
    assert [letter["topic"] for letter in dead_letters] == [f"{topics.ESCALATIONS}.dlq"]


async def test_offsets_of_partitions_taken_away_are_not_committed(
    sessions: async_sessionmaker[AsyncSession], inbox: Inbox, infra_settings: Settings
) -> None:
    """A revocation whose commit failed leaves offsets of partitions now read by another
    member: committing them would fail every later commit. They are dropped; the next owner
    reads those records again, and its inbox absorbs them."""
    applied: list[tuple[UUID, RecordPosition]] = []
    consumer = consumer_applying(sessions, inbox, infra_settings, applied)
    kafka = reading_from(consumer)
    kept, taken = TopicPartition(topics.ESCALATIONS, 0), TopicPartition(topics.ESCALATIONS, 3)
    on_kept, on_taken = record_of(status_changed(), 0), record_of(status_changed(), 3)
    await consumer._process_fetched({kept: [on_kept], taken: [on_taken]})  # type: ignore[dict-item]
    kafka.assigned = {kept}
    await consumer._commit_applied()
    assert kafka.commits == [{kept: on_kept.offset + 1}]
    await consumer._commit_applied()
    assert len(kafka.commits) == 1  # nothing left over


async def test_a_batchs_preparation_sees_the_events_its_handlers_will_apply(
    sessions: async_sessionmaker[AsyncSession], inbox: Inbox, infra_settings: Settings
) -> None:
    prepared: list[list[UUID]] = []
    applied: list[UUID] = []

    async def prepare(_: AsyncSession, events: Sequence[CloudEvent]) -> None:
        assert applied == []  # before any handler
        prepared.append([event.id for event in events])

    async def remember(_: AsyncSession, event: CloudEvent, __: RecordPosition) -> None:
        applied.append(event.id)

    table = HandlerTable(
        {IncidentStatusChanged.ce_type: remember}, frozenset({DeadlineMissed.ce_type}), prepare
    )
    consumer = EventConsumer(
        GROUP, (topics.ESCALATIONS,), table, sessions, inbox, CapturingProducer(), infra_settings
    )
    one, other, ignored = status_changed(), status_changed(), missed()
    batch = [record_of(one), record_of(ignored), record_of(other), record_of(one)]
    await consumer._apply_batch(batch)  # type: ignore[arg-type]
    assert prepared == [[one.id, other.id]] and applied == [one.id, other.id]


async def test_an_event_that_asks_nothing_of_the_consumer_leaves_no_inbox_row(
    sessions: async_sessionmaker[AsyncSession], inbox: Inbox, infra_settings: Settings
) -> None:
    """A handled type's event that asks nothing of this consumer (`HandlerTable.asks`) is read
    past once decoded, in a batch and one by one; a batch of nothing else opens no
    transaction."""
    applied: list[UUID] = []

    async def remember(_: AsyncSession, event: CloudEvent, __: RecordPosition) -> None:
        applied.append(event.id)

    table = HandlerTable(
        {IncidentStatusChanged.ce_type: remember},
        frozenset({DeadlineMissed.ce_type}),
        asks={IncidentStatusChanged.ce_type: lambda change: change.reason != "nobody's"},
    )
    consumer = EventConsumer(
        GROUP, (topics.ESCALATIONS,), table, sessions, inbox, CapturingProducer(), infra_settings
    )
    reading_from(consumer)
    asking, passing, alone = (
        status_changed(),
        status_changed("nobody's"),
        status_changed("nobody's"),
    )
    await consumer._apply_batch([record_of(passing), record_of(asking)])  # type: ignore[list-item]
    assert applied == [asking.id]
    assert set(await inbox_rows(sessions, inbox, asking, passing)) == {asking.id}

    assert await consumer.process(record_of(alone)) == "ignored"  # type: ignore[arg-type]

    class NoTransaction:
        def transaction(self) -> None:
            raise AssertionError("a batch that asks nothing opened a transaction")

    consumer._batches = NoTransaction()  # type: ignore[assignment]
    await consumer._apply_batch([record_of(alone), record_of(passing)])  # type: ignore[list-item]
    assert applied == [asking.id]
    assert await inbox_rows(sessions, inbox, passing, alone) == {}
