"""R20: a duty's creation and that of the duty a merge moved it to are keyed by different
incidents, so two consumers may handle them at the same moment. Each alert claims its duty
(`alert_duties`), and the moved duty's creation claims the duty it came from before it looks
for that duty's alert: whichever claims first decides, the other waits at the key until it has
committed and then finds the claim. Every order ends with one alert, for the moved duty. Real
PostgreSQL, two transactions open at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.notification.handlers import NEW_ALERTS_DEFERRED
from shared.db import create_session_factory
from shared.events import CloudEvent
from shared.events.models import ObligationCreated
from shared.kafka import RecordPosition
from shared.settings import Settings
from shared.staging import write_deferred
from tests.integration.helpers import eventually
from tests.notification.builders import created, moved, obligation
from tests.notification.conftest import notification_handlers

PARTY = "SFS:150626104"
POSITION = RecordPosition("escalations.v1", 0, 0)
# A backend waiting for another transaction's claim of a duty.
WAITING_AT_A_CLAIM = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock' AND query LIKE '%alert_duties%'"
)


async def alerts_of(engine: AsyncEngine, *duties: UUID) -> list[tuple[UUID, list[UUID]]]:
    """The alerts standing or having stood for `duties`: (duty now, the duties before)."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT obligation_id, former_obligation_ids FROM notification.notifications"
                " WHERE obligation_id = ANY(:ids) OR former_obligation_ids && CAST(:ids AS uuid[])"
            ),
            {"ids": list(duties)},
        )
        return [(row.obligation_id, list(row.former_obligation_ids)) for row in rows]


async def handled_with_the_other_open(
    settings: Settings,
    engine: AsyncEngine,
    first: ObligationCreated,
    second: ObligationCreated,
) -> None:
    """`first` handled and its alert written in a transaction left open while `second` is
    handled in another; `second` has to wait for `first` to end, and goes on once it has."""
    handlers = notification_handlers(settings)
    sessions = create_session_factory(engine)
    observer = await asyncpg.connect(settings.plain_database_url)

    async def apply(
        event: CloudEvent, until: Callable[[AsyncSession], Awaitable[None]] | None = None
    ) -> None:
        async with sessions() as session, session.begin():
            await handlers.handle(session, event, POSITION)
            await write_deferred(session, NEW_ALERTS_DEFERRED)
            if until is not None:
                await until(session)

    first_written = asyncio.Event()
    first_may_end = asyncio.Event()

    async def held_open(_: AsyncSession) -> None:
        first_written.set()
        await first_may_end.wait()

    try:
        first_task = asyncio.create_task(apply(created(first), held_open))
        await first_written.wait()
        second_task = asyncio.create_task(apply(created(second)))

        async def waiting() -> int:
            return int(await observer.fetchval(WAITING_AT_A_CLAIM))

        await eventually(waiting, lambda count: count == 1)
        assert not second_task.done()
        first_may_end.set()
        await asyncio.gather(first_task, second_task)
    finally:
        await observer.close()


async def test_R20_the_duty_alerted_while_its_moved_duty_is_handled_carries_its_alert_on(
    private_settings: Settings, engine: AsyncEngine
) -> None:
    old = obligation(PARTY)
    new = moved(old)
    await handled_with_the_other_open(private_settings, engine, old, new)
    assert await alerts_of(engine, old.obligation_id, new.obligation_id) == [
        (new.obligation_id, [old.obligation_id])
    ]


async def test_R20_the_moved_duty_alerted_while_the_old_one_is_handled_alerts_once(
    private_settings: Settings, engine: AsyncEngine
) -> None:
    old = obligation(PARTY)
    new = moved(old)
    await handled_with_the_other_open(private_settings, engine, new, old)
    assert await alerts_of(engine, old.obligation_id, new.obligation_id) == [
        (new.obligation_id, [old.obligation_id])
    ]
