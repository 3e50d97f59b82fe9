"""A consumer's batch locks the stored alerts it may change at its start, in the order of their
ids, as the record of delivered answers does: the two never wait for each other in turn (real
PostgreSQL, the batch applied as the consumer applies one: its preparation, then its handlers,
in one transaction)."""

from __future__ import annotations

import asyncio
import contextlib
from uuid import UUID

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notification.handlers import LOCK_ALERTS_OF_DUTIES
from shared.db import create_session_factory
from shared.events import CloudEvent
from shared.events.models import ObligationCreated
from shared.kafka import HandlerTable, RecordPosition
from shared.settings import Settings
from tests.integration.helpers import eventually
from tests.notification.builders import created, moved, obligation, obligation_met
from tests.notification.conftest import notification_handlers
from tests.notification.test_new_alerts import alerts
from tests.support import statements_sent

PARTY = "SFS:150626104"
POSITION = RecordPosition("escalations.v1", 0, 0)
LOCKS_AHEAD = str(LOCK_ALERTS_OF_DUTIES).split(" = ANY")[0]


async def apply_batch(engine: AsyncEngine, table: HandlerTable, batch: list[CloudEvent]) -> None:
    """`batch` applied as the consumer applies one."""
    async with create_session_factory(engine)() as session, session.begin():
        assert table.prepare is not None
        await table.prepare(session, batch)
        for event in batch:
            handler = table.handler_for(event.type)
            assert handler is not None
            await handler(session, event, POSITION)


async def stored_alerts(
    engine: AsyncEngine, table: HandlerTable, count: int
) -> list[tuple[UUID, ObligationCreated]]:
    """`count` alerts stored NEW, each with its duty, in the order of the alerts' ids."""
    duties = [obligation(PARTY) for _ in range(count)]
    await apply_batch(engine, table, [created(duty) for duty in duties])
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT obligation_id, id FROM notification.notifications"
                " WHERE obligation_id = ANY(:duties)"
            ),
            {"duties": [duty.obligation_id for duty in duties]},
        )
        ids = {duty_id: alert_id for duty_id, alert_id in rows}
    return sorted(((ids[duty.obligation_id], duty) for duty in duties), key=lambda pair: pair[0])


async def test_a_batch_locks_the_alerts_it_withdraws_first_in_the_order_of_their_ids(
    private_settings: Settings, engine: AsyncEngine
) -> None:
    """Three alerts met in the batch, the last-stored first: while another writer holds the
    first of them, the batch waits for it holding none of the others (taken in the order of
    the events, it would hold the later two, which that writer, locking in id order, may be
    about to ask for). Once let go, the batch withdraws all three."""
    table = notification_handlers(private_settings).table
    stored = await stored_alerts(engine, table, 3)
    ids = [alert_id for alert_id, _ in stored]
    batch = [obligation_met(duty) for _, duty in reversed(stored)]
    holder = await asyncpg.connect(private_settings.plain_database_url)
    observer = await asyncpg.connect(private_settings.plain_database_url)
    lock = "SELECT id FROM notification.notifications WHERE id = ANY($1) FOR UPDATE"
    applying: asyncio.Task[None] | None = None
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute(lock, ids[:1])
        applying = asyncio.create_task(apply_batch(engine, table, batch))

        async def batch_waiting() -> int:
            return int(
                await observer.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                )
            )

        await eventually(batch_waiting, lambda waiting: waiting == 1)
        # The later alerts are free: the batch asked for the first before them.
        async with observer.transaction():
            taken = await observer.fetch(lock + " NOWAIT", ids[1:])
        assert sorted(row["id"] for row in taken) == ids[1:]
        await holding.rollback()
        await asyncio.wait_for(applying, timeout=60)
    finally:
        if applying is not None and not applying.done():
            applying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await applying
        await holder.close()
        await observer.close()
    found = await alerts(engine, *(duty.obligation_id for _, duty in stored))
    assert found == {duty.obligation_id: ["WITHDRAWN"] for _, duty in stored}


async def test_a_batch_that_changes_one_stored_alert_takes_no_lock_ahead(
    private_settings: Settings, engine: AsyncEngine
) -> None:
    """A batch that changes at most one stored alert cannot meet another writer in turn: it
    asks for no lock ahead. One that withdraws one alert and carries another on for a moved
    duty (R20) locks both ahead, in one statement."""
    table = notification_handlers(private_settings).table
    (_, met), (_, carried) = await stored_alerts(engine, table, 2)
    fresh = obligation(PARTY)
    with statements_sent(engine) as alone:
        await apply_batch(engine, table, [obligation_met(met), created(fresh)])
    assert not [s for s in alone if s.startswith(LOCKS_AHEAD)]

    moved_on = moved(carried)
    with statements_sent(engine) as both:
        await apply_batch(engine, table, [created(moved_on), obligation_met(fresh)])
    ahead = [s for s in both if s.startswith(LOCKS_AHEAD)]
    assert len(ahead) == 1
    assert both[0] == ahead[0]  # before anything else the batch sends
    found = await alerts(engine, met.obligation_id, fresh.obligation_id, moved_on.obligation_id)
    assert found == {
        met.obligation_id: ["WITHDRAWN"],
        fresh.obligation_id: ["WITHDRAWN"],
        moved_on.obligation_id: ["NEW"],  # the carried alert, standing for the moved duty
    }
