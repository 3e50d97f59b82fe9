"""Tables of the intake schema."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Index, String, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.db import service_metadata
from shared.runtime import MessagingTables

SCHEMA = "intake"
metadata = service_metadata(SCHEMA)
messaging = MessagingTables.of(metadata)

incidents = Table(
    "incidents",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("category", String(32), nullable=False),
    Column("phase", String(32), nullable=False),
    Column("township_code", String(9), nullable=False),
    Column("facts", JSONB, nullable=False, comment="current facts, subjects with full ID numbers"),
    Column("reporter", JSONB, nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_reason", Text),
    Column("status_changed_at", DateTime(timezone=True)),
    Column("reported_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_incidents_township_reported", "township_code", "reported_at"),
)

reports = Table(
    "reports",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), ForeignKey("incidents.id"), nullable=False),
    Column("kind", String(16), nullable=False, comment="INITIAL, FOLLOW_UP or CORRECTION"),
    Column("changes", JSONB, nullable=False),
    Column("previous", JSONB, nullable=False),
    Column("reporter", JSONB, nullable=False),
    Column("text", Text),
    Column("reason", Text, comment="why the facts were corrected"),
    Column("filed_at", DateTime(timezone=True), nullable=False),
    Index("ix_reports_incident", "incident_id", "filed_at"),
)

actions = Table(
    "actions",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), ForeignKey("incidents.id"), nullable=False),
    Column("action", String(40), nullable=False),
    Column("party", String(40), nullable=False),
    Column("actor_name", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("note", Text),
    Column("on_behalf_of", String(40), comment="the owner it was recorded for, one rung down"),
    Column("reason", Text, comment="why on the owner's behalf, or why closed before found"),
    Column("to_party", String(40), comment="REPORTED: the party reported to"),
    Column("rejected_reason", Text, comment="why escalation did not apply it, if it did not"),
    Index("ix_actions_incident", "incident_id", "occurred_at"),
)

# A source's own reference (the platform's 警情编号, a hotline ticket): one incident per source
# and reference, whatever it sends again under it.
external_refs = Table(
    "external_refs",
    metadata,
    Column("source_party", String(40), primary_key=True),
    Column("external_ref", String(64), primary_key=True),
    # Claimed before the incident row is written, in the same transaction: no foreign key.
    Column("incident_id", UUID(as_uuid=True), nullable=False),
    Column("request_hash", String(64), nullable=False, comment="of the last report under it"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("incident_id", UUID(as_uuid=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
