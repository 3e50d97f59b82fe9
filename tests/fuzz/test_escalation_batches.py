"""Escalation's reports in a batch (`EscalationHandlers.prepare_reports`, `store.CARRIED_REPORTS`):
R17's signs of the batch's subjects read once, before any transaction, and every report stored
with its duties, timers, signs and drill by the batch's one statement, with the outbox's events
and the inbox claim. A later report in the batch sees an earlier one's signs (R17); an event of
another type in the batch sees the incidents reported before it; a report of an incident stored
before fails the batch, and applied alone it is refused as ever. On this package's own
PostgreSQL and broker, with every schema migrated and no service running (`conftest.py`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Table, func, select, text

from services.escalation.models import drills, incidents, obligations, subject_signs, timers
from shared.events import CloudEvent, topics
from shared.events.models import ActionRecorded, IncidentReported, Reporter, Subject
from tests.fuzz.conftest import FuzzBench
from tests.fuzz.harness import ConsumerUnderTest, Record
from tests.fuzz.test_known_defects import facts
from tests.support import statements_sent

GROUP = "escalation.incidents"


def report(incident_id: UUID, at: datetime, **changes: object) -> CloudEvent:
    data = IncidentReported(
        incident_id=incident_id,
        facts=facts(**changes),
        reporter=Reporter(party="SFS:150626102", name="李明"),
        reported_at=at,
    )
    return CloudEvent.new("intake", data, incident_id)


def record_of(harness: ConsumerUnderTest, event: CloudEvent) -> Record:
    return harness.record(topics.INCIDENTS, event.value(), event.headers(), event.key)


async def count(bench: FuzzBench, table: Table, incident_ids: list[UUID]) -> int:
    async with bench.sessions() as session:
        column = table.c.id if table is incidents else table.c.incident_id
        return int(
            await session.scalar(
                select(func.count()).select_from(table).where(column.in_(incident_ids))
            )
            or 0
        )


async def rules_fired(bench: FuzzBench, incident_id: UUID) -> set[str]:
    async with bench.sessions() as session:
        found = await session.execute(
            select(obligations.c.rule_id).where(obligations.c.incident_id == incident_id)
        )
        return set(found.scalars())


async def test_a_batch_of_reports_is_one_read_and_one_statement_and_sees_its_own_signs(
    bench: FuzzBench,
) -> None:
    harness = bench.consumer("escalation", GROUP)
    subject = Subject(id=f"SQJZ-BATCH-{uuid4().hex[:8]}", name="赵某某")
    now = datetime.now(UTC)
    first, second, absconded, drill = uuid4(), uuid4(), uuid4(), uuid4()
    batch = [
        report(first, now - timedelta(minutes=2), phase="SIGNS", subjects=(subject,)),
        report(second, now - timedelta(minutes=1), phase="SIGNS", subjects=(subject,)),
        report(absconded, now, category="ABSCONDED", phase="OCCURRED"),
        report(drill, now, phase="IN_PROGRESS", drill=True),
    ]
    engine = bench.sessions.kw["bind"]
    with statements_sent(engine) as sent:
        await harness.consumer._apply_batch([record_of(harness, event) for event in batch])  # type: ignore[arg-type]
    assert [" ".join(statement.split()[:3]) for statement in sent] == [
        "SELECT sign.incident_id, sign.subject_id,",
        "WITH reported_incidents AS",
    ]
    reported = [first, second, absconded, drill]
    assert await count(bench, incidents, reported) == 4
    assert await count(bench, subject_signs, reported) == 2
    assert await count(bench, drills, reported) == 1
    assert await count(bench, timers, [absconded]) == 1  # R3's search window
    # R17: the second report of signs about the subject, a minute after the first, in the
    # same batch: its decision saw the first's sign, not yet stored when the batch began.
    assert "R17" not in await rules_fired(bench, first)
    assert "R17" in await rules_fired(bench, second)
    async with bench.sessions() as session:
        duties = await session.scalar(
            select(func.count())
            .select_from(obligations)
            .where(obligations.c.incident_id.in_(reported))
        )
        announced = await session.scalar(
            text(
                "SELECT count(*) FROM escalation.outbox"
                " WHERE key = ANY(CAST(:keys AS text[])) AND event_type = 'obligation.created'"
            ),
            {"keys": [str(incident) for incident in reported]},
        )
        claimed = await session.scalar(
            text("SELECT count(*) FROM escalation.inbox WHERE ce_id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": [event.id for event in batch]},
        )
    assert duties and announced == duties and claimed == 4


async def test_an_event_after_a_report_in_its_batch_finds_the_incident_stored(
    bench: FuzzBench,
) -> None:
    harness = bench.consumer("escalation", GROUP)
    incident_id = uuid4()
    reported = report(incident_id, datetime.now(UTC), phase="IN_PROGRESS")
    arrived = ActionRecorded(
        incident_id=incident_id,
        action_id=uuid4(),
        action="ON_SCENE",
        party="SFS:150626102",
        actor_name="王所长",
        occurred_at=datetime.now(UTC),
        recorded_at=datetime.now(UTC),
    )
    action = CloudEvent.new("intake", arrived, incident_id)
    await harness.consumer._apply_batch(  # type: ignore[arg-type]
        [record_of(harness, reported), record_of(harness, action)]
    )
    assert await count(bench, incidents, [incident_id]) == 1
    assert await harness.inbox_row("intake", action.id) is not None


async def test_a_report_of_an_incident_stored_before_fails_its_batch_and_alone_is_refused(
    bench: FuzzBench,
) -> None:
    harness = bench.consumer("escalation", GROUP)
    known, fresh = uuid4(), uuid4()
    now = datetime.now(UTC)
    await harness.consumer._apply_batch([record_of(harness, report(known, now))])  # type: ignore[arg-type]
    again, new = report(known, now), report(fresh, now)
    records = [record_of(harness, again), record_of(harness, new)]
    with pytest.raises(Exception, match="duplicate key"):
        await harness.consumer._apply_batch(records)  # type: ignore[arg-type]
    assert await count(bench, incidents, [fresh]) == 0  # nothing of the batch is written
    # Taken apart, as the consumer takes a failed batch: the new report is stored, the other
    # refused with its reason.
    assert [await harness.land(record) for record in records] == ["dead-lettered", "applied"]
    await harness.settle(bench.dead_letters)
    letter = (GROUP, records[0].topic, records[0].partition, records[0].offset)
    assert "already reported" in bench.dead_letters.reasons[letter]
    assert await count(bench, incidents, [fresh]) == 1
