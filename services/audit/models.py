"""Tables of the audit schema. Every table but the inbox, the outbox and the findings cursor is
append-only: owned by `audit_owner`, written by `audit_writer` (INSERT and SELECT only), guarded
by triggers that refuse UPDATE, DELETE and TRUNCATE (migrations 0001, 0002 and 0004)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
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

SCHEMA = "audit"
OWNER_ROLE = "audit_owner"
WRITER_ROLE = "audit_writer"
metadata = service_metadata(SCHEMA)
messaging = MessagingTables.of(metadata)

# The leaves: one row per event, `index` its position in the Merkle tree. Stored as written up
# to 8 kB (migration 0008: `toast_tuple_target`): their sealed fields hardly compress.
log_entries = Table(
    "log_entries",
    metadata,
    Column("index", BigInteger, primary_key=True, autoincrement=False),
    Column("ce_source", String(200), nullable=False),
    Column("ce_id", UUID(as_uuid=True), nullable=False),
    Column("ce_type", String(200), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("ce_time", DateTime(timezone=True), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("partition", SmallInteger, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("leaf", LargeBinary, nullable=False, comment="canonical JSON of the CloudEvent"),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("appended_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("ce_source", "ce_id"),
    Index("ix_log_entries_subject", "subject", "ce_time", "index"),
)

# A leaf in the history of an incident besides the one it was published under: a link, merge or
# unlink names two incidents (R20), and each one's history shows it. `index` is a leaf's, with
# no foreign key: like tree_nodes, the rows are appended with the leaf, and a key would let
# TRUNCATE of the log fail on the key before the append-only trigger refuses it.
incident_leaves = Table(
    "incident_leaves",
    metadata,
    Column("incident_id", String(200), primary_key=True),
    Column("index", BigInteger, primary_key=True, autoincrement=False),
    Index("ix_incident_leaves_index", "index"),
)

# Every complete subtree above the leaves: (level, index) covers leaves
# [index * 2**level, (index + 1) * 2**level). Any root or proof needs at most ~2 log2(n) rows.
tree_nodes = Table(
    "tree_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("index", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False, comment="the signed checkpoint (C2SP signed note)"),
    Column("signed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

cosignatures = Table(
    "cosignatures",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(200), primary_key=True, comment="the witness's vkey"),
    Column("signature_line", Text, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

findings = Table(
    "findings",
    metadata,
    Column("finding_id", UUID(as_uuid=True), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), nullable=False),
    Column("rule_id", String(20), nullable=False),
    Column("party", String(200), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("evidence", ARRAY(BigInteger), nullable=False),
    Column("data", JSONB, nullable=False, comment="the audit.finding event data"),
    Column("found_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_findings_incident", "incident_id"),
    Index("ix_findings_party_rule", "party", "rule_id"),
)

# The findings follower's cursor: leaves below `position` have been reviewed. The one table of
# the schema (with the inbox and outbox) that is not append-only: `audit_writer` may UPDATE
# this row and nothing else (migration 0003).
findings_cursor = Table(
    "findings_cursor",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("id = 1", name="one_row"),
    CheckConstraint("position >= 0", name="position_not_negative"),
)

# A finding judged by the BJO or the CEO: every review is kept, the latest counts; each row is
# the finding.reviewed event published with it.
finding_reviews = Table(
    "finding_reviews",
    metadata,
    Column("review_id", UUID(as_uuid=True), primary_key=True),
    Column(
        "finding_id",
        UUID(as_uuid=True),
        ForeignKey(findings.c.finding_id),
        nullable=False,
    ),
    Column("incident_id", UUID(as_uuid=True), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reviewed_at", DateTime(timezone=True), nullable=False),
    Column("data", JSONB, nullable=False, comment="the finding.reviewed event data"),
    CheckConstraint("decision IN ('CONFIRMED', 'DISMISSED')", name="decision_known"),
    Index("ix_finding_reviews_finding", "finding_id", "reviewed_at"),
    Index("ix_finding_reviews_incident", "incident_id"),
)

# R15: commendations and disciplines, each the accountability.recorded event published with it.
accountability_records = Table(
    "accountability_records",
    metadata,
    Column("record_id", UUID(as_uuid=True), primary_key=True),
    Column("incident_id", UUID(as_uuid=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("data", JSONB, nullable=False, comment="the accountability.recorded event data"),
    CheckConstraint("kind IN ('COMMENDATION', 'DISCIPLINE')", name="kind_known"),
    Index("ix_accountability_records_incident", "incident_id", "recorded_at"),
)

# An incident's data key, wrapped under the service's key-encryption key: the personal fields of
# its leaves are sealed under it (services/audit/personal.py). Erased after the retention period
# (`wrapped` NULL, `erased_at` set), the leaves stay and their personal data cannot be read by
# anyone. `audit_writer` may INSERT and UPDATE here (migration 0006).
data_keys = Table(
    "data_keys",
    metadata,
    Column("incident", String(200), primary_key=True, comment="the leaves' subject"),
    Column("wrapped", JSONB, nullable=True, comment="the key sealed under the KEK; NULL: erased"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Column("erased_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("(wrapped IS NULL) = (erased_at IS NOT NULL)", name="erased_or_kept"),
    Index(
        "ix_data_keys_kept_closed",
        "closed_at",
        postgresql_where=text("wrapped IS NOT NULL AND closed_at IS NOT NULL"),
    ),
)
