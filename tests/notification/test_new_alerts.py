"""A batch's new alerts are one statement at its commit, and every handler after them in the
batch sees them as if each had been written at once (real PostgreSQL, the handlers applied as
the consumer applies a batch: one transaction)."""

from __future__ import annotations

from uuid import UUID

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notification.dispatch import DISPATCH_CHANNEL
from shared.db import create_session_factory
from shared.kafka import RecordPosition
from shared.settings import Settings
from tests.integration.helpers import eventually
from tests.notification.builders import created, obligation, obligation_waived
from tests.notification.conftest import notification_handlers
from tests.support import execute_sql, statements_sent

PARTY = "SFS:150626104"
POSITION = RecordPosition("escalations.v1", 0, 0)


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


def alert_inserts(statements: list[str]) -> list[str]:
    return [s for s in statements if "INSERT INTO notification.notifications" in s]


async def test_a_batch_s_new_alerts_are_one_statement_and_seen_by_what_follows(
    private_settings: Settings, engine: AsyncEngine
) -> None:
    table = notification_handlers(private_settings).table
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
    """One statement stores a batch's alerts and wakes the dispatchers; a batch that stores
    none wakes nobody."""
    handlers = notification_handlers(private_settings)
    duties = [obligation(PARTY) for _ in range(4)]
    listener = await asyncpg.connect(private_settings.plain_database_url)
    heard: list[str] = []
    await listener.add_listener(DISPATCH_CHANNEL, lambda *args: heard.append(args[3]))
    try:
        with statements_sent(engine) as statements:
            async with create_session_factory(engine)() as session, session.begin():
                for duty in duties:
                    await handlers.handle(session, created(duty), POSITION)
                # A repeat of the batch's first duty: still one alert.
                await handlers.handle(session, created(duties[0]), POSITION)
        found = await alerts(engine, *(duty.obligation_id for duty in duties))
        assert found == {duty.obligation_id: ["NEW"] for duty in duties}
        assert len(alert_inserts(statements)) == 1
        assert [s for s in statements if "pg_notify" in s] == alert_inserts(statements)

        # The same duties again: no alert stored, nobody woken. A NOTIFY sent after that
        # commit arrives after any it made, so hearing it alone means it made none.
        async with create_session_factory(engine)() as session, session.begin():
            for duty in duties:
                await handlers.handle(session, created(duty), POSITION)
        await execute_sql(private_settings, f"NOTIFY {DISPATCH_CHANNEL}, 'after'")

        async def heard_so_far() -> list[str]:
            return list(heard)

        await eventually(heard_so_far, lambda so_far: "after" in so_far)
        assert heard == ["", "after"]
    finally:
        await listener.close()
