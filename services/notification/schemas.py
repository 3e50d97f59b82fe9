"""Response bodies of the notification API."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel


class AttemptOut(BaseModel):
    channel: str
    contact: str
    attempt: int
    outcome: str
    status_code: int | None
    latency_ms: float
    error: str | None
    attempted_at: datetime


class NotificationOut(BaseModel):
    id: UUID
    incident_id: UUID
    obligation_id: UUID
    party: str
    rule_id: str
    drill: bool
    status: str
    rounds: int
    created_at: datetime
    delivered_at: datetime | None
    title: str
    attempts: list[AttemptOut] = []


class NotificationList(BaseModel):
    items: list[NotificationOut]
