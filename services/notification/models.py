"""Tables of the notification schema."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.db import service_metadata
from shared.runtime import MessagingTables

SCHEMA = "notification"
metadata = service_metadata(SCHEMA)
messaging = MessagingTables.of(metadata)

notifications = Table(
    "notifications",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), nullable=False),
    Column("obligation_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("party", String(40), nullable=False),
    Column("rule_id", String(16), nullable=False),
    Column("drill", Boolean, nullable=False),
    Column("alert", JSONB, nullable=False, comment="the rendered alert, as sent"),
    Column("status", String(16), nullable=False, comment="PENDING SENDING DELIVERED FAILED"),
    Column("rounds", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("lease_until", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_notifications_incident", "incident_id", "party"),
    Index(
        "ix_notifications_due",
        "next_attempt_at",
        postgresql_where=text("status IN ('PENDING', 'SENDING')"),
    ),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("notification_id", UUID(as_uuid=True), ForeignKey("notifications.id"), nullable=False),
    Column("contact_index", SmallInteger, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("contact", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status_code", Integer),
    Column("latency_ms", Float, nullable=False),
    Column("error", Text),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
    Index("ix_attempts_notification", "notification_id", "attempted_at"),
)
