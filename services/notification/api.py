"""REST routes of notification: alerts sent for an incident and every attempt."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.notification.models import attempts, notifications
from services.notification.schemas import AttemptOut, NotificationList, NotificationOut
from shared.problems import not_found
from shared.runtime import DatabaseSession

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])


async def _with_attempts(session: AsyncSession, rows: list) -> list[NotificationOut]:
    by_notification: dict[UUID, list[AttemptOut]] = defaultdict(list)
    if rows:
        attempt_rows = await session.execute(
            select(attempts)
            .where(attempts.c.notification_id.in_([row.id for row in rows]))
            .order_by(attempts.c.attempted_at)
        )
        for attempt in attempt_rows:
            by_notification[attempt.notification_id].append(
                AttemptOut.model_validate(attempt, from_attributes=True)
            )
    return [
        NotificationOut(
            id=row.id,
            incident_id=row.incident_id,
            obligation_id=row.obligation_id,
            party=row.party,
            rule_id=row.rule_id,
            drill=row.drill,
            status=row.status,
            rounds=row.rounds,
            created_at=row.created_at,
            delivered_at=row.delivered_at,
            title=row.alert["title"],
            attempts=by_notification[row.id],
        )
        for row in rows
    ]


@router.get("", summary="Alerts of an incident, optionally for one party")
async def list_notifications(
    session: DatabaseSession,
    incident_id: Annotated[UUID, Query()],
    party: Annotated[str | None, Query(max_length=40)] = None,
) -> NotificationList:
    query = select(notifications).where(notifications.c.incident_id == incident_id)
    if party:
        query = query.where(notifications.c.party == party)
    rows = (await session.execute(query.order_by(notifications.c.created_at))).all()
    return NotificationList(items=await _with_attempts(session, list(rows)))


@router.get("/{notification_id}", summary="One alert with every delivery attempt")
async def get_notification(notification_id: UUID, session: DatabaseSession) -> NotificationOut:
    row = (
        await session.execute(select(notifications).where(notifications.c.id == notification_id))
    ).first()
    if row is None:
        raise not_found("Notification", notification_id)
    return (await _with_attempts(session, [row]))[0]
