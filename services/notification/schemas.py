"""Request and response bodies of the notification API."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from shared.paging import NEXT


class AttemptOut(BaseModel):
    channel: str
    contact: str
    contact_index: int
    attempt: int
    outcome: str
    status_code: int | None
    gateway_code: str | None = None
    latency_ms: float
    error: str | None
    attempted_at: datetime


class DeliveryOut(BaseModel):
    """The alert to one contact: its state, and every attempt to reach it."""

    contact_index: int
    channel: str
    contact: str
    status: str = Field(description="PENDING SENDING DELIVERED FAILED CANCELLED")
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None


class NotificationOut(BaseModel):
    id: UUID
    incident_id: UUID
    kind: str = Field(
        default="ALERT",
        description="ALERT: about an obligation, acknowledged by its reader; NOTICE: tells the "
        "party something (an action it recorded was refused, a change of the incident (R19), "
        "an incident gone quiet (R9), a commendation or discipline (R15)), finished once "
        "delivered",
    )
    obligation_id: UUID | None = Field(description="none for a notice")
    party: str
    rule_id: str | None = Field(description="none for a notice")
    drill: bool
    status: str = Field(
        description="NEW PENDING DELIVERED ACKNOWLEDGED UNACKNOWLEDGED FAILED WITHDRAWN INFORMED"
    )
    withdrawn_reason: str | None = Field(
        default=None, description="why the obligation no longer needs its alert"
    )
    contacts_total: int | None
    contact_index: int | None = Field(description="the contact alerted now, from 0")
    created_at: datetime
    delivered_at: datetime | None
    ack_seconds: float | None = Field(
        default=None,
        description="the policy's ACK deadline for this alert; none: the service's "
        "NOTIFICATION_ACK_SECONDS",
    )
    ack_due_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    closed_at: datetime | None
    title: str
    deliveries: list[DeliveryOut] = []
    attempts: list[AttemptOut] = []


class NotificationList(BaseModel):
    items: list[NotificationOut]
    next: str | None = Field(default=None, description=NEXT)


class AckIn(BaseModel):
    token: str = Field(min_length=1, max_length=200)


class AckOut(BaseModel):
    notification_id: UUID
    acknowledged_at: datetime
    contact_index: int | None = Field(
        description="the contact whose link acknowledged it; none on the duty console"
    )
    channel: str
    contact: str
    replayed: bool = Field(description="true when the alert had been acknowledged before")
