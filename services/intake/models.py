"""Tables of the intake schema."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, Index, String, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared.db import SWEPT_BY_TIME, service_metadata
from shared.runtime import MessagingTables

SCHEMA = "intake"
metadata = service_metadata(SCHEMA)
# One personal value sealed (`PiiCipher.seal_value`): {"sealed": {kid, nonce, ct}}, or NULL.
SEALED_VALUE = JSONB(none_as_null=True)
messaging = MessagingTables.of(metadata)

incidents = Table(
    "incidents",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("category", String(32), nullable=False),
    Column("phase", String(32), nullable=False),
    Column("township_code", String(9), nullable=False),
    Column("facts", JSONB, nullable=False, comment="current facts, subjects with full ID numbers"),
    Column("reporter", JSONB, nullable=False, comment="the reporter, phone sealed"),
    Column("status", String(32), nullable=False),
    Column("status_reason", Text),
    Column("status_changed_at", DateTime(timezone=True)),
    Column("reported_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("merged_into", UUID(as_uuid=True), comment="the incident it was merged into (R20)"),
    Index("ix_incidents_township_reported", "township_code", "reported_at"),
    # A new incident's candidates (R20), walked in order to the page's end (migration 0014).
    Index(
        "ix_incidents_candidates",
        "township_code",
        "category",
        "reported_at",
        postgresql_where=text("merged_into IS NULL"),
    ),
    # GET /v1/incidents across townships: newest first (migration 0010).
    Index("ix_incidents_reported", "reported_at", "id"),
)

# Who each incident is about, by 社区矫正对象编号: a new report naming one of them is of the
# same event (R20). The ids travel in events in clear; names and ID numbers stay sealed.
incident_subjects = Table(
    "incident_subjects",
    metadata,
    Column("incident_id", UUID(as_uuid=True), ForeignKey("incidents.id"), primary_key=True),
    Column("subject_id", String(64), primary_key=True),
    Index("ix_incident_subjects_subject", "subject_id"),
)

# Incidents people linked (one event, both kept) or merged (one survives) under R20; an unlink
# ends the row, it is never deleted.
incident_links = Table(
    "incident_links",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), ForeignKey("incidents.id"), nullable=False),
    Column("linked_incident_id", UUID(as_uuid=True), ForeignKey("incidents.id"), nullable=False),
    Column("kind", String(8), nullable=False, comment="LINK, or MERGE (linked_incident_id merged)"),
    Column("party", String(40), nullable=False),
    Column("actor_name", SEALED_VALUE, nullable=False, comment="who decided, sealed"),
    Column("reason", Text, nullable=False),
    Column("changes", JSONB, nullable=False, comment="facts of incident_id the merge set"),
    Column("previous", JSONB, nullable=False, comment="the facts they replaced"),
    Column("linked_at", DateTime(timezone=True), nullable=False),
    Column("unlinked_at", DateTime(timezone=True)),
    Column("unlinked_by", String(40)),
    Column("unlinked_actor_name", SEALED_VALUE, comment="sealed"),
    Column("unlink_reason", Text),
    Index("ix_incident_links_incident", "incident_id"),
    Index("ix_incident_links_linked", "linked_incident_id"),
)

reports = Table(
    "reports",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), ForeignKey("incidents.id"), nullable=False),
    Column(
        "kind",
        String(16),
        nullable=False,
        comment="INITIAL, FOLLOW_UP, CORRECTION, or LINKED: another source's first report (R20)",
    ),
    Column("changes", JSONB, nullable=False),
    Column("previous", JSONB, nullable=False),
    Column("reporter", JSONB, nullable=False, comment="the reporter, phone sealed"),
    Column("text", SEALED_VALUE, comment="the report's text, sealed"),
    Column("reason", Text, comment="why the facts were corrected"),
    Column("filed_at", DateTime(timezone=True), nullable=False),
    Column("stated", JSONB, comment="LINKED: the facts as its source stated them"),
    Column("external_ref", String(64), comment="LINKED: the source's own reference"),
    Column("linked_by", String(16), comment="LINKED: SUBJECT_ID or EXTERNAL_REF"),
    Column("split_into", UUID(as_uuid=True), comment="LINKED, then unlinked: its own incident"),
    Index("ix_reports_incident", "incident_id", "filed_at"),
)

actions = Table(
    "actions",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), ForeignKey("incidents.id"), nullable=False),
    Column("action", String(40), nullable=False),
    Column("party", String(40), nullable=False),
    Column("actor_name", SEALED_VALUE, nullable=False, comment="who acted, sealed"),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("note", SEALED_VALUE, comment="sealed"),
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
    # A report quoting a reference finds the incidents of any source quoting it (R20).
    Index("ix_external_refs_ref", "external_ref"),
    # Matching reads the references of each open incident it weighs (R20; migration 0013).
    Index("ix_external_refs_incident", "incident_id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("caller", String(40), primary_key=True, comment="the party whose key it is"),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("incident_id", UUID(as_uuid=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_idempotency_keys_created", "created_at", **SWEPT_BY_TIME),
)
