"""A batch's new alerts are one statement at its commit, and every handler after them in the
batch sees them as if each had been written at once (real PostgreSQL, the handlers applied as
the consumer applies a batch: one transaction)."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notification.handlers import NotificationHandlers
from services.notification.models import messaging
from services.notification.templates import default_texts
from shared.db import create_session_factory
from shared.domain.directory import Directory
from shared.events import CloudEvent
from shared.events.models import ObligationCreated
from shared.kafka import RecordPosition
from shared.settings import Settings
from tests.notification.builders import obligation, obligation_waived
from tests.support import statements_sent

PARTY = "SFS:150626104"
POSITION = RecordPosition("escalations.v1", 0, 0)


def created(data: ObligationCreated) -> CloudEvent:
    return CloudEvent.new("escalation", data, data.incident_id)


async def alerts(engine: AsyncEngine, *obligation_ids: UUID) -> dict[UUID, list[str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT obligation_id, status FROM notification.notifications"
                " WHERE obligation_id = ANY(:ids)"
            ),
            {"ids": list(obligation_ids)},
        )
        found: dict[UUID, list[str]] = {}
        for obligation_id, status in rows:
            found.setdefault(obligation_id, []).append(status)
        return found


def handlers_of(settings: Settings) -> NotificationHandlers:
    return NotificationHandlers(
        Directory.load(settings.directory_file), messaging.outbox, default_texts()
    )


def alert_inserts(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("INSERT INTO notification.notifications")]


async def test_a_batch_s_new_alerts_are_one_statement_and_seen_by_what_follows(
    private_settings: Settings, engine: AsyncEngine
) -> None:
    table = handlers_of(private_settings).table
    kept, waived = obligation(PARTY), obligation(PARTY)
    moved_away = obligation(PARTY)
    moved = obligation(PARTY).model_copy(update={"moved_from": moved_away.obligation_id})
    batch = [
        created(kept),
        created(waived),
        obligation_waived(waived),  # withdraws the alert deferred before it
        created(moved_away),
        created(moved),  # takes over the alert deferred before it (R20)
    ]
    with statements_sent(engine) as statements:
        async with create_session_factory(engine)() as session, session.begin():
            for item in batch:
                handler = table.handler_for(item.type)
                assert handler is not None
                await handler(session, item, POSITION)

    duties = (kept, waived, moved_away, moved)
    found = await alerts(engine, *(duty.obligation_id for duty in duties))
    assert found == {
        kept.obligation_id: ["NEW"],
        waived.obligation_id: ["WITHDRAWN"],
        moved.obligation_id: ["NEW"],  # one alert: moved_away's, standing for the moved duty
    }
    inserts = alert_inserts(statements)
    # kept and waived together (written before the waiver reads them), moved_away before the
    # move reads it: two statements for three alerts, none at commit left.
    assert len(inserts) == 2
    assert all("unnest" in insert for insert in inserts)


async def test_the_new_alerts_of_a_batch_of_creations_are_one_statement_at_commit(
    private_settings: Settings, engine: AsyncEngine
) -> None:
    handlers = handlers_of(private_settings)
    duties = [obligation(PARTY) for _ in range(4)]
    with statements_sent(engine) as statements:
        async with create_session_factory(engine)() as session, session.begin():
            for duty in duties:
                await handlers.handle(session, created(duty), POSITION)
            # A repeat of the batch's first duty: still one alert.
            await handlers.handle(session, created(duties[0]), POSITION)
    found = await alerts(engine, *(duty.obligation_id for duty in duties))
    assert found == {duty.obligation_id: ["NEW"] for duty in duties}
    assert len(alert_inserts(statements)) == 1
