"""Notification's batch of duties' creations (`services/notification/handlers.py`): the alerts,
the claims of their duties (R20) and the inbox claims of the events are one statement, run
alone, without a transaction begun around it. The alerts, about 2 kB of JSON each, are stored
as written, not compressed (migration 0015), as are the log's leaves (audit's 0008). On this
package's own PostgreSQL and broker, with every schema migrated and no service running
(`conftest.py`)."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import text

from shared.events import CloudEvent, topics
from tests.fuzz.conftest import FuzzBench
from tests.fuzz.harness import ConsumerUnderTest, Record
from tests.notification.builders import obligation
from tests.support import statements_sent

GROUP = "notification.escalations"
PARTY = "SFS:150626104"


def record_of(harness: ConsumerUnderTest, event: CloudEvent) -> Record:
    return harness.record(topics.ESCALATIONS, event.value(), event.headers(), event.key)


async def counted(bench: FuzzBench, sql: str, ids: list[UUID]) -> int:
    async with bench.sessions() as session:
        return int(await session.scalar(text(sql), {"ids": ids}) or 0)


async def test_a_batch_of_duties_alerts_and_claims_them_in_one_statement_alone(
    bench: FuzzBench,
) -> None:
    harness = bench.consumer("notification", GROUP)
    # As long as the bench's alerts, which all went compressed before (about 2 kB of JSON).
    told = "对象王某某持刀与人冲突，现场仍在对峙，司法所工作人员已赶赴现场并报警。" * 12
    alerting = [obligation(PARTY, summary=told) for _ in range(3)]
    silent = obligation(PARTY).model_copy(update={"notify": False})  # asks nothing of us
    batch = [CloudEvent.new("escalation", data, data.incident_id) for data in [*alerting, silent]]
    engine = bench.sessions.kw["bind"]
    with statements_sent(engine) as sent:
        await harness.consumer._apply_batch([record_of(harness, event) for event in batch])  # type: ignore[arg-type]
    assert [" ".join(statement.split()[:3]) for statement in sent] == ["WITH carried AS"]
    duties = [data.obligation_id for data in alerting]
    assert (
        await counted(
            bench,
            "SELECT count(*) FROM notification.notifications"
            " WHERE obligation_id = ANY(CAST(:ids AS uuid[]))",
            duties,
        )
        == 3
    )
    assert (
        await counted(
            bench,
            "SELECT count(*) FROM notification.alert_duties d"
            " JOIN notification.notifications n ON n.id = d.notification_id"
            " WHERE d.duty_id = ANY(CAST(:ids AS uuid[])) AND n.obligation_id = d.duty_id",
            duties,
        )
        == 3
    )
    assert (
        await counted(
            bench,
            "SELECT count(*) FROM notification.notifications"
            " WHERE obligation_id = ANY(CAST(:ids AS uuid[])) AND octet_length(alert::text) > 2000"
            " AND pg_column_compression(alert) IS NULL",
            duties,
        )
        == 3
    )
    assert (
        await counted(
            bench,
            "SELECT count(*) FROM notification.inbox WHERE ce_id = ANY(CAST(:ids AS uuid[]))",
            [event.id for event in batch],
        )
        == 3
    )


async def test_alerts_messages_and_leaves_are_compressed_only_above_a_page(
    bench: FuzzBench,
) -> None:
    async with bench.sessions() as session:
        options = dict(
            (
                await session.execute(
                    text(
                        "SELECT n.nspname || '.' || c.relname, c.reloptions FROM pg_class c"
                        " JOIN pg_namespace n ON n.oid = c.relnamespace"
                        " WHERE (n.nspname, c.relname) IN (('notification', 'notifications'),"
                        " ('notification', 'deliveries'), ('audit', 'log_entries'))"
                    )
                )
            ).all()
        )
    tables = ("notification.notifications", "notification.deliveries", "audit.log_entries")
    assert options == {table: ["toast_tuple_target=8160"] for table in tables}
