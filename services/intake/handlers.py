"""Event consumers of intake: the lifecycle status projected from `escalations.v1`."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import incidents
from shared.events import CloudEvent
from shared.events.models import IncidentStatusChanged
from shared.kafka import RecordPosition


async def project_status(session: AsyncSession, event: CloudEvent, _: RecordPosition) -> None:
    if not isinstance(event.data, IncidentStatusChanged):
        return
    change = event.data
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
