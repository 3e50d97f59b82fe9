"""Event consumers of intake: the lifecycle status and refused actions, from `escalations.v1`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import TextClause, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import actions
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
from shared.staging import columns, defer


async def record_rejection(session: AsyncSession, _: CloudEvent, rejected: ActionRejected) -> None:
    await session.execute(
        update(actions)
        .where(actions.c.id == rejected.action_id)
        .values(rejected_reason=rejected.reason)
    )


# A batch's status changes, written by one statement at its commit: each incident's latest
# change (`latest_changes`), and only over an older one: a late, older change must not overwrite
# a newer one.
PROJECT_STATUSES = text(
    "UPDATE intake.incidents AS i SET status = c.status, status_reason = c.reason,"
    " status_changed_at = c.changed_at"
    " FROM unnest(CAST(:incident_id AS uuid[]), CAST(:status AS text[]),"
    " CAST(:reason AS text[]), CAST(:changed_at AS timestamptz[]))"
    " AS c(incident_id, status, reason, changed_at)"
    " WHERE i.id = c.incident_id"
    " AND (i.status_changed_at IS NULL OR i.status_changed_at <= c.changed_at)"
)
STATUSES_DEFERRED = "intake.statuses"


def latest_changes(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each incident's change of the latest time, the last of equal times: what applying the
    changes one by one, each only over an older one, leaves (one row per incident, as an
    UPDATE moves a row once)."""
    latest: dict[UUID, dict[str, Any]] = {}
    for change in changes:
        known = latest.get(change["incident_id"])
        if known is None or known["changed_at"] <= change["changed_at"]:
            latest[change["incident_id"]] = change
    return list(latest.values())


def write_statuses(changes: list[dict[str, Any]]) -> tuple[TextClause, dict[str, Any]]:
    return PROJECT_STATUSES, columns(latest_changes(changes))


async def project_status(
    session: AsyncSession, _: CloudEvent, change: IncidentStatusChanged
) -> None:
    defer(
        session,
        STATUSES_DEFERRED,
        write_statuses,
        {
            "incident_id": change.incident_id,
            "status": change.status.value,
            "reason": change.reason,
            "changed_at": change.changed_at,
        },
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
