"""Tables of the audit schema. `log_entries` is append-only (see the initial migration)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

from shared.db import service_metadata
from shared.runtime import MessagingTables

SCHEMA = "audit"
metadata = service_metadata(SCHEMA)
messaging = MessagingTables.of(metadata)

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
    Column("chain_hash", LargeBinary(32), nullable=False),
    Column("appended_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("ce_source", "ce_id"),
    Index("ix_log_entries_subject", "subject", "ce_time", "index"),
)

# One row: the log's size and last chain hash; locking it serialises appends.
log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("head_hash", LargeBinary(32), nullable=False),
)
