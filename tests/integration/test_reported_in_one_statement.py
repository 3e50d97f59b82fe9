"""Escalation's answer to a report stores the incident and the duties its rules decided in one
statement (`Store.store_reported`): the incident as stored carries the rules fired, and each
duty is announced once. On the suite's database, in a transaction rolled back at the end."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from services.escalation.handlers import EscalationHandlers
from services.escalation.models import incidents, messaging, obligations
from services.escalation.rules import Policy
from services.escalation.store import Store
from shared.db import create_engine, create_session_factory
from shared.domain.directory import Directory
from shared.kafka import RecordPosition
from shared.settings import Settings
from shared.staging import staged
from tests.integration.helpers import reported_event
from tests.support import statements_sent
from tools.devrun import ServiceProcesses


async def test_a_reports_incident_and_duties_are_stored_by_one_statement(
    system: ServiceProcesses, infra_settings: Settings
) -> None:
    directory = Directory.load(infra_settings.directory_file)
    store = Store(
        Policy.load(infra_settings.policy_file),
        messaging.outbox,
        {party.code: party.name for party in directory.parties},
    )
    handler = EscalationHandlers(store).table.handler_for("incident.reported")
    assert handler is not None
    event = reported_event()
    incident_id = uuid.UUID(event.subject)
    engine = create_engine(infra_settings, pool_size=1)
    try:
        async with create_session_factory(engine)() as session:
            transaction = await session.begin()
            with statements_sent(engine) as statements:
                await handler(session, event, RecordPosition("incidents.v1", 0, 0))
            fired = await session.scalar(
                select(incidents.c.fired_rules).where(incidents.c.id == incident_id)
            )
            duties = await session.scalar(
                select(func.count()).where(obligations.c.incident_id == incident_id)
            )
            announced = [row["event_type"] for row in staged(session).outbox["escalation"]]
            await transaction.rollback()  # nothing of it reaches the running system
    finally:
        await engine.dispose()
    writes = [s for s in statements if "INSERT INTO escalation.obligations" in s]
    assert len(writes) == 1 and "INSERT INTO escalation.incidents" in writes[0]
    assert not any(s.lstrip().startswith("INSERT INTO escalation.incidents") for s in statements)
    assert {"R1", "R6", "R7"} <= set(fired)
    assert duties == 8  # R1, R6 x5, R7, R9, as the same report on the stack
    assert announced.count("obligation.created") == duties
    assert announced[0] == "incident.status_changed"
