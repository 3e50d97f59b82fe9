"""Tables of the escalation schema."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    func,
    literal_column,
    text,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from shared.db import service_metadata
from shared.runtime import MessagingTables

SCHEMA = "escalation"
metadata = service_metadata(SCHEMA)
messaging = MessagingTables.of(metadata)

incidents = Table(
    "incidents",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("facts", JSONB, nullable=False, comment="facts as published (masked)"),
    Column("reporter", JSONB, nullable=False, comment="the reporting party only"),
    Column("status", String(32), nullable=False),
    Column("drill", Boolean, nullable=False),
    Column("policy_version", String(64), nullable=False),
    Column("reported_at", DateTime(timezone=True), nullable=False),
    Column("fired_rules", ARRAY(String(16)), nullable=False, server_default="{}"),
    Column("closed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column(
        "last_news_at",
        DateTime(timezone=True),
        comment="the last report or action on the incident (R9: quiet after a week)",
    ),
    Column(
        "quiet_since",
        DateTime(timezone=True),
        comment="set when R9 found the incident quiet; cleared by news",
    ),
    Column("found_at", DateTime(timezone=True)),
    Column(
        "merged_into",
        UUID(as_uuid=True),
        comment="R20: merged into this incident; its deadlines and timers rest until unmerged",
    ),
    # The few merged incidents, which every look at the deadlines leaves out (migration 0008).
    Index("ix_incidents_merged", "id", postgresql_where=text("merged_into IS NOT NULL")),
)

# Where an incident is: its facts as escalation last applied them (a township correction moves
# it, and the access to its duties with it). The key is written out, not bound, so that a
# query on it can use the index (migration 0007).
INCIDENT_TOWNSHIP = type_coerce(
    incidents.c.facts.op("->>")(literal_column("'township_code'")), Text
)
Index("ix_incidents_township", INCIDENT_TOWNSHIP)

obligations = Table(
    "obligations",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), nullable=False),
    Column("party", String(40), nullable=False),
    Column("action", String(40), nullable=False),
    Column("action_text", Text, nullable=False),
    Column("rule_id", String(16), nullable=False),
    Column("plan_section", String(32), nullable=False),
    Column("deadline_name", String(32), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("explanation", Text, nullable=False),
    Column("trigger", String(64), nullable=False, server_default="reported"),
    Column("notify", Boolean, nullable=False, server_default="false"),
    Column("drill", Boolean, nullable=False, server_default="false"),
    Column("escalated_from", UUID(as_uuid=True)),
    Column("status", String(16), nullable=False, comment="PENDING MET MET_LATE MISSED WAIVED"),
    Column("met_at", DateTime(timezone=True)),
    Column("met_by_event_id", UUID(as_uuid=True)),
    Column("closed_reason", Text, comment="why it was waived or missed"),
    Column("source_event_id", UUID(as_uuid=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("owner", String(40), comment="who must act"),
    Column(
        "omitted_at",
        DateTime(timezone=True),
        comment="R11: still undone this long after its deadline",
    ),
    Column(
        "moved_from",
        UUID(as_uuid=True),
        comment="R20: the same duty of another incident, moved here by a merge or its undoing",
    ),
    Column(
        "moved_to",
        UUID(as_uuid=True),
        comment="R20: waived here because it lives on as this obligation of another incident",
    ),
    Index("ix_obligations_incident", "incident_id", "due_at"),
    # GET /v1/obligations across incidents, in its order (migration 0007).
    Index("ix_obligations_due", "due_at", "id"),
    Index("ix_obligations_pending_due", "due_at", postgresql_where=text("status = 'PENDING'")),
    Index(
        "ix_obligations_missed_due",
        "due_at",
        postgresql_where=text("status = 'MISSED' AND omitted_at IS NULL"),
    ),
)

# The duties the deadline worker waits on, as the two partial indexes above name them. The
# statuses are written out, not bound: a plan kept for any value of a bound status can use
# neither index, and walked every duty ever made by its due time instead (3.6 ms a look at
# 6,000 duties, and on with the county's history).
PENDING_DUTY = obligations.c.status == literal_column("'PENDING'")
MISSED_NOT_YET_OMITTED = and_(
    obligations.c.status == literal_column("'MISSED'"), obligations.c.omitted_at.is_(None)
)

# Rule timers (R3's SEARCH_WINDOW ...): rows, fired by any replica exactly once.
timers = Table(
    "timers",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), nullable=False),
    Column("name", String(64), nullable=False),
    Column("rule_id", String(16), nullable=False),
    Column("fire_at", DateTime(timezone=True), nullable=False),
    Column("fired_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(
        "ix_timers_pending_fire",
        "fire_at",
        postgresql_where=text("fired_at IS NULL AND cancelled_at IS NULL"),
    ),
    Index("ix_timers_incident", "incident_id"),
)

# R17: every report of signs, per subject.
subject_signs = Table(
    "subject_signs",
    metadata,
    Column("subject_id", String(64), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), primary_key=True),
    Column("reported_at", DateTime(timezone=True), nullable=False),
)

# R16: drills reported, counted per 司法所 and calendar year.
drills = Table(
    "drills",
    metadata,
    Column("incident_id", UUID(as_uuid=True), primary_key=True),
    Column("party", String(40), nullable=False),
    Column("year", Integer, nullable=False),
    Column("reported_at", DateTime(timezone=True), nullable=False),
    Index("ix_drills_year_party", "year", "party"),
)

# R20: what a merge did to each open duty of the merged incident, so its undoing restores it.
merge_moves = Table(
    "merge_moves",
    metadata,
    Column("link_id", UUID(as_uuid=True), primary_key=True, comment="the merge"),
    Column(
        "obligation_id", UUID(as_uuid=True), primary_key=True, comment="the merged incident's duty"
    ),
    Column("merged_incident_id", UUID(as_uuid=True), nullable=False),
    Column("surviving_incident_id", UUID(as_uuid=True), nullable=False),
    Column(
        "outcome",
        String(8),
        nullable=False,
        comment="MOVED: lives on as `counterpart_id`; DOUBLED: waived, `counterpart_id` stands",
    ),
    Column("counterpart_id", UUID(as_uuid=True), nullable=False),
    Column("status", String(16), nullable=False, comment="the duty's status when merged"),
    Column("restored_at", DateTime(timezone=True), comment="the merge was undone"),
)
