"""Event consumers of intake: the lifecycle status and refused actions, from `escalations.v1`."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import actions, incidents
from shared.events import CloudEvent
from shared.events.models import (
    ActionRejected,
    DeadlineMissed,
    IncidentStatusChanged,
    IncidentUpdated,
    IncidentWentQuiet,
    ObligationCreated,
    ObligationMet,
    ObligationOmitted,
    ObligationWaived,
)
from shared.kafka import HandlerTable, on_data


async def record_rejection(session: AsyncSession, _: CloudEvent, rejected: ActionRejected) -> None:
    await session.execute(
        update(actions)
        .where(actions.c.id == rejected.action_id)
        .values(rejected_reason=rejected.reason)
    )


async def project_status(
    session: AsyncSession, _: CloudEvent, change: IncidentStatusChanged
) -> None:
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


# What intake does with each type of escalations.v1: it shows an incident's status and why an
# action was refused; obligations and their outcomes are for escalation's own API to show.
HANDLERS = HandlerTable(
    {
        IncidentStatusChanged.ce_type: on_data(project_status),
        ActionRejected.ce_type: on_data(record_rejection),
    },
    ignored=frozenset(
        {
            ObligationCreated.ce_type,
            ObligationMet.ce_type,
            ObligationWaived.ce_type,
            DeadlineMissed.ce_type,
            ObligationOmitted.ce_type,
            IncidentWentQuiet.ce_type,
            # Updates are told to parties by notification; the status comes with its own event.
            IncidentUpdated.ce_type,
        }
    ),
)
