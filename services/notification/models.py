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
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from shared.db import service_metadata
from shared.runtime import MessagingTables

SCHEMA = "notification"
metadata = service_metadata(SCHEMA)
messaging = MessagingTables.of(metadata)

# Rows of `notifications` and `deliveries` are stored as written up to 8 kB, not compressed
# (migration 0015: `toast_tuple_target`): an alert and its message are each about 2 kB of JSON.
notifications = Table(
    "notifications",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), nullable=False),
    Column(
        "kind",
        String(8),
        nullable=False,
        server_default="ALERT",
        comment="ALERT: about an obligation, walks the contacts until acknowledged; "
        "NOTICE: tells the party something, finished once delivered",
    ),
    Column("obligation_id", UUID(as_uuid=True), unique=True, comment="none for a notice"),
    Column("party", String(40), nullable=False),
    Column("rule_id", String(16), comment="none for a notice"),
    Column("drill", Boolean, nullable=False),
    Column("alert", JSONB, nullable=False, comment="the alert and the minimised facts it is from"),
    Column(
        "trace_headers",
        JSONB,
        nullable=False,
        server_default="{}",
        comment="W3C trace context of the routing decision, so sends join the incident's trace",
    ),
    Column(
        "status",
        String(16),
        nullable=False,
        comment="NEW PENDING DELIVERED ACKNOWLEDGED UNACKNOWLEDGED FAILED WITHDRAWN INFORMED",
    ),
    Column("withdrawn_reason", Text, comment="why the obligation no longer needs its alert"),
    Column("contacts", JSONB, comment="the contacts to walk, fixed when delivery starts"),
    Column("contact_index", SmallInteger, comment="the contact being alerted now"),
    Column(
        "ack_seconds",
        Float,
        comment="the policy's ACK deadline for this alert; none: NOTIFICATION_ACK_SECONDS",
    ),
    Column("ack_due_at", DateTime(timezone=True), comment="then the next contact is alerted"),
    Column("delivered_at", DateTime(timezone=True), comment="first delivery to any contact"),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("acknowledged_contact_index", SmallInteger),
    Column(
        "acknowledged_via",
        String(200),
        comment="who acknowledged on the duty console (值班台), not a contact's link",
    ),
    Column("closed_at", DateTime(timezone=True), comment="walked to the end, or withdrawn"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column(
        "former_obligation_ids",
        ARRAY(UUID(as_uuid=True)),
        nullable=False,
        server_default="{}",
        comment="R20: the same duty under the ids it had before a merge moved it; the alert "
        "carries on under `obligation_id`",
    ),
    Index("ix_notifications_incident", "incident_id", "party"),
    # GET /v1/notifications across incidents, in its order (migration 0010).
    Index("ix_notifications_created", "created_at", "id"),
    Index("ix_notifications_new", "created_at", postgresql_where=text("status = 'NEW'")),
    Index("ix_notifications_ack_due", "ack_due_at", postgresql_where=text("status = 'DELIVERED'")),
)

# R20: each duty an alert stands or stood for, claimed once (migration 0014). An alert is stored
# only with the claim of its duty, and the creation of a duty a merge moved claims the duty it
# came from first: whichever of the two claims the duty first decides about its alert, and the
# other, handled at the same time under another incident's key, waits at the key and then
# finds the claim. Nobody is alerted twice for one duty.
alert_duties = Table(
    "alert_duties",
    metadata,
    Column("duty_id", UUID(as_uuid=True), primary_key=True),
    Column(
        "notification_id",
        UUID(as_uuid=True),
        comment="the alert that took the duty; none: a merge moved it on before any did",
    ),
)

# Deliveries nothing more is done with: their messages are kept only for a period.
FINISHED_DELIVERY = ("DELIVERED", "FAILED", "CANCELLED")

# One row per (alert, contact): a contact is sent an alert at most once on our side.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("notification_id", UUID(as_uuid=True), ForeignKey("notifications.id"), nullable=False),
    Column("contact_index", SmallInteger, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("target", JSONB, nullable=False, comment="the contact as in the directory"),
    Column("contact", Text, nullable=False, comment="the contact as shown, secrets cut"),
    Column(
        "status", String(16), nullable=False, comment="PENDING SENDING DELIVERED FAILED CANCELLED"
    ),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("lease_until", DateTime(timezone=True)),
    Column("lease_id", UUID(as_uuid=True), comment="fences out a worker whose lease ran out"),
    Column(
        "message",
        JSONB,
        comment="what the contact is sent; emptied once finished and past its retention",
    ),
    Column("trace_headers", JSONB, nullable=False, server_default="{}"),
    Column("last_error", Text),
    Column("delivered_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("notification_id", "contact_index"),
    Index(
        "ix_deliveries_due",
        "channel",
        "next_attempt_at",
        postgresql_where=text("status IN ('PENDING', 'SENDING')"),
    ),
    # The leases that run out first (migration 0013).
    Index("ix_deliveries_leased", "lease_until", postgresql_where=text("status = 'SENDING'")),
    Index(
        "ix_deliveries_messages_kept",
        "created_at",
        postgresql_where=text(
            "message IS NOT NULL AND status IN ('DELIVERED', 'FAILED', 'CANCELLED')"
        ),
    ),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("notification_id", UUID(as_uuid=True), ForeignKey("notifications.id"), nullable=False),
    Column("delivery_id", UUID(as_uuid=True), ForeignKey("deliveries.id")),
    Column("contact_index", SmallInteger, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("contact", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status_code", Integer),
    Column("gateway_code", String(64), comment="the gateway's own answer code, e.g. errcode"),
    Column("latency_ms", Float, nullable=False),
    Column("error", Text),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
    Index("ix_attempts_notification", "notification_id", "attempted_at"),
)
