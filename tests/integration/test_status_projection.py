"""Intake shows each incident's lifecycle status from escalation's events: a consumed batch's
changes are written by one statement at its commit, each incident's latest change only, and a
late, older change never overwrites a newer one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx

from services.intake.handlers import HANDLERS
from shared.db import create_engine, create_session_factory
from shared.domain.vocabulary import LifecycleStatus
from shared.events import CloudEvent
from shared.events.models import IncidentStatusChanged
from shared.kafka import RecordPosition
from shared.settings import Settings
from tests.integration.helpers import violence_report
from tests.support import statements_sent

# Far ahead of the system's own changes of these incidents, which never overwrite them then.
LATER = datetime(2100, 1, 1, tzinfo=UTC)
POSITION = RecordPosition("escalations.v1", 0, 0)


def change(incident_id: UUID, status: LifecycleStatus, minutes: int) -> CloudEvent:
    data = IncidentStatusChanged(
        incident_id=incident_id,
        status=status,
        previous_status=None,
        changed_at=LATER + timedelta(minutes=minutes),
        reason=f"{status} at +{minutes} min",
    )
    return CloudEvent.new("escalation", data, incident_id)


async def test_a_batchs_status_changes_are_one_statement_and_the_latest_of_each_stays(
    clients: dict[str, httpx.AsyncClient], infra_settings: Settings
) -> None:
    intake = clients["intake"]
    first, second = [
        UUID((await intake.post("/v1/incidents", json=violence_report())).json()["id"])
        for _ in range(2)
    ]
    engine = create_engine(infra_settings, pool_size=1)
    sessions = create_session_factory(engine)

    async def apply(*events: CloudEvent) -> list[str]:
        with statements_sent(engine) as statements:
            async with sessions() as session, session.begin():
                for event in events:
                    handler = HANDLERS.handler_for(event.type)
                    assert handler is not None
                    await handler(session, event, POSITION)
        return [s for s in statements if "intake.incidents" in s]

    try:
        written = await apply(
            change(first, LifecycleStatus.RESPONDING, 1),
            change(second, LifecycleStatus.RESPONDING, 1),
            change(first, LifecycleStatus.CLOSED, 3),
            change(first, LifecycleStatus.ESCALATED, 2),  # late: older than CLOSED
            change(second, LifecycleStatus.CONTROLLED, 2),
        )
        assert len(written) == 1
        # A later batch's older change of the first changes nothing.
        await apply(change(first, LifecycleStatus.SEARCHING, 0))
    finally:
        await engine.dispose()

    shown = {
        incident: (await intake.get(f"/v1/incidents/{incident}")).json()
        for incident in (first, second)
    }
    assert shown[first]["status"] == "CLOSED"
    assert shown[second]["status"] == "CONTROLLED"
