"""Event consumers of intake: the lifecycle status and refused actions, from `escalations.v1`."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import actions, incidents
from shared.events import CloudEvent
from shared.events.models import ActionRejected, IncidentStatusChanged
from shared.kafka import RecordPosition


async def project(session: AsyncSession, event: CloudEvent, _: RecordPosition) -> None:
    match event.data:
        case IncidentStatusChanged():
            await project_status(session, event.data)
        case ActionRejected():
            await session.execute(
                update(actions)
                .where(actions.c.id == event.data.action_id)
                .values(rejected_reason=event.data.reason)
            )


async def project_status(session: AsyncSession, change: IncidentStatusChanged) -> None:
    # Only move forward in time: a late, older status change must not overwrite a newer one.
    await session.execute(
        update(incidents)
        .where(
            incidents.c.id == change.incident_id,
            (incidents.c.status_changed_at.is_(None))
            | (incidents.c.status_changed_at <= change.changed_at),
        )
        .values(
            status=change.status,
            status_reason=change.reason,
            status_changed_at=change.changed_at,
        )
    )
