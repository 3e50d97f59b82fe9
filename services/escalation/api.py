"""REST routes of escalation: an incident's obligations and why each exists."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.escalation.models import incidents, obligations
from services.escalation.schemas import ObligationOut, ObligationsOut
from shared.problems import not_found
from shared.runtime import session_in_transaction

router = APIRouter(prefix="/v1/incidents", tags=["obligations"])
Session = Annotated[AsyncSession, Depends(session_in_transaction)]


@router.get(
    "/{incident_id}/obligations",
    summary="Who must do what, by when, under which rule, and whether it was done",
)
async def list_obligations(incident_id: UUID, request: Request, session: Session) -> ObligationsOut:
    incident = (
        await session.execute(select(incidents).where(incidents.c.id == incident_id))
    ).first()
    if incident is None:
        raise not_found("Incident", incident_id)
    rows = (
        await session.execute(
            select(obligations)
            .where(obligations.c.incident_id == incident_id)
            .order_by(obligations.c.due_at, obligations.c.rule_id, obligations.c.party)
        )
    ).all()
    directory = request.app.state.directory
    return ObligationsOut(
        incident_id=incident_id,
        status=incident.status,
        policy_version=incident.policy_version,
        obligations=[
            ObligationOut(
                id=row.id,
                party=row.party,
                party_name=(party.name if (party := directory.party(row.party)) else row.party),
                action=row.action,
                action_text=row.action_text,
                rule_id=row.rule_id,
                plan_section=row.plan_section,
                deadline_name=row.deadline_name,
                due_at=row.due_at,
                status=row.status,
                met_at=row.met_at,
                met_by_event_id=row.met_by_event_id,
                why=row.explanation,
            )
            for row in rows
        ],
    )
