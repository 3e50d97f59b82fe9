"""The alert locks of a batch's duties (R20, `services/notification/handlers.py`) are taken in
one statement before its handlers, and a lock the transaction holds is not asked for again.
Real PostgreSQL."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notification.handlers import (
    MOVED_DUTY_LOCKS,
    alert_key,
    hold_alert_of,
    hold_alerts_of,
)
from shared.messaging import Outbox
from shared.settings import Settings
from tests.support import statements_sent


async def test_a_batchs_alert_locks_are_one_statement_and_held_to_its_end(
    infra_settings: Settings,
    scratch_schema: tuple[async_sessionmaker[AsyncSession], Outbox, Table],
) -> None:
    sessions, _, _ = scratch_schema
    duties = [uuid4() for _ in range(3)]
    observer = await asyncpg.connect(infra_settings.plain_database_url)
    try:
        async with sessions() as session:
            with statements_sent(session.bind) as statements:  # type: ignore[arg-type]
                async with session.begin():
                    await hold_alerts_of(session, [*duties, duties[0]])
                    for duty in duties:
                        await hold_alert_of(session, duty)  # held already: nothing asked
                    locks = await observer.fetch(
                        "SELECT objid FROM pg_locks WHERE locktype = 'advisory'"
                        " AND classid = $1 AND granted",
                        MOVED_DUTY_LOCKS,
                    )
                    held = {lock["objid"] for lock in locks}
                    assert {alert_key(duty) & 0xFFFFFFFF for duty in duties} <= held
                async with session.begin():
                    await hold_alert_of(session, duties[0])  # a new transaction asks again
    finally:
        await observer.close()
    assert sum("pg_advisory_xact_lock" in s for s in statements) == 2
