"""A batch of records is claimed in the inbox by one statement (`Inbox.claim_all`) and applied
in one transaction (`EventConsumer._apply_batch`): each handled event once, whatever repeats it
within the batch or before it; ignored types leave no inbox row. Real PostgreSQL, intake's
schema; the records are handed over as the broker would give them."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.intake.models import messaging
from shared.db import create_engine, create_session_factory, migrate
from shared.events import CloudEvent, topics
from shared.events.models import DeadlineMissed, IncidentStatusChanged
from shared.kafka import EventConsumer, HandlerTable, RecordPosition
from shared.messaging import Inbox, InboxEntry
from shared.settings import Settings
from tests.support import CapturingProducer

GROUP = "intake.inbox-batch-test"
OFFSETS = itertools.count(1_000_000)


@dataclass(frozen=True)
class Record:
    """The fields of an aiokafka `ConsumerRecord` a consumer reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def record_of(event: CloudEvent) -> Record:
    return Record(topics.ESCALATIONS, 0, next(OFFSETS), event.key, event.value(), event.headers())


def status_changed() -> CloudEvent:
    data = IncidentStatusChanged(
        incident_id=uuid4(),
        status="RESPONDING",
        previous_status="REPORTED",
        changed_at=datetime.now(UTC),
        reason="batch test",
    )
    return CloudEvent.new("escalation", data, data.incident_id)


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


@pytest.fixture
async def sessions(infra_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await migrate(infra_settings, "intake")
    engine = create_engine(infra_settings, pool_size=2)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


def consumer_applying(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    applied: list[tuple[UUID, RecordPosition]],
) -> EventConsumer:
    async def remember(_: AsyncSession, event: CloudEvent, position: RecordPosition) -> None:
        applied.append((event.id, position))

    table = HandlerTable(
        {IncidentStatusChanged.ce_type: remember}, frozenset({DeadlineMissed.ce_type})
    )
    inbox = Inbox(messaging.inbox_table, GROUP)
    return EventConsumer(
        GROUP, (topics.ESCALATIONS,), table, sessions, inbox, CapturingProducer(), settings
    )


async def inbox_rows(
    sessions: async_sessionmaker[AsyncSession], *events: CloudEvent
) -> dict[UUID, tuple[str, int]]:
    inbox = messaging.inbox_table
    async with sessions() as session:
        rows = await session.execute(
            select(inbox.c.ce_id, inbox.c.consumer, inbox.c.offset).where(
                inbox.c.ce_id.in_([event.id for event in events])
            )
        )
        return {row.ce_id: (row.consumer, row.offset) for row in rows}


async def test_a_batch_applies_each_handled_event_once(
    sessions: async_sessionmaker[AsyncSession], infra_settings: Settings
) -> None:
    applied: list[tuple[UUID, RecordPosition]] = []
    consumer = consumer_applying(sessions, infra_settings, applied)
    seen_before, fresh, ignored = status_changed(), status_changed(), missed()
    async with sessions() as session, session.begin():
        earlier = record_of(seen_before)
        entry = InboxEntry(
            seen_before.source, seen_before.id, seen_before.type, earlier.topic, 0, earlier.offset
        )
        assert await Inbox(messaging.inbox_table, GROUP).claim_all(session, [entry]) == {
            (seen_before.source, seen_before.id)
        }

    first, again, other, read_past = (
        record_of(fresh),
        record_of(fresh),  # the same event twice in one batch (sent again by an outbox)
        record_of(seen_before),
        record_of(ignored),
    )
    await consumer._apply_batch([first, again, other, read_past])  # type: ignore[list-item]

    assert applied == [(fresh.id, RecordPosition(first.topic, first.partition, first.offset))]
    rows = await inbox_rows(sessions, seen_before, fresh, ignored)
    assert rows == {seen_before.id: (GROUP, earlier.offset), fresh.id: (GROUP, first.offset)}

    # The whole batch again, as after a crash before its offsets were committed: nothing new.
    await consumer._apply_batch([first, again, other, read_past])  # type: ignore[list-item]
    assert len(applied) == 1


async def test_claim_all_of_nothing_asks_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        assert await Inbox(messaging.inbox_table, GROUP).claim_all(session, []) == set()
        assert not session.in_transaction()
