"""Response bodies of the escalation API."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from shared.domain import LifecycleStatus


class ObligationOut(BaseModel):
    id: UUID
    party: str
    party_name: str
    action: str
    action_text: str
    rule_id: str
    plan_section: str
    deadline_name: str
    due_at: datetime
    status: str
    met_at: datetime | None
    met_by_event_id: UUID | None
    why: str


class ObligationsOut(BaseModel):
    incident_id: UUID
    status: LifecycleStatus
    policy_version: str
    obligations: list[ObligationOut]
