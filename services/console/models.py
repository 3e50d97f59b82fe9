"""Tables of the console schema: who is logged in, and where each incident is.

The console keeps no incident data of its own: pages read the services with the user's token.
It keeps the township of each incident only to decide which browsers hear of its events.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, LargeBinary, String, Table, Text, func
from sqlalchemy.dialects.postgresql import UUID

from shared.db import service_metadata
from shared.runtime import MessagingTables

SCHEMA = "console"
metadata = service_metadata(SCHEMA)
messaging = MessagingTables.of(metadata)

sessions = Table(
    "sessions",
    metadata,
    # The SHA-256 of the cookie's value: a copy of this table opens no session.
    Column("id_hash", LargeBinary(32), primary_key=True),
    Column("subject", String(200), nullable=False),
    Column("party", String(40), nullable=False),
    Column("scopes", Text, nullable=False, comment="space separated, as in a token"),
    Column("display_name", String(200), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("login_method", String(16), nullable=False, comment="oidc or local"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_sessions_expires_at", "expires_at"),
)

incident_places = Table(
    "incident_places",
    metadata,
    Column("incident_id", UUID(as_uuid=True), primary_key=True),
    Column("township_code", String(20), nullable=False),
    # The trace of the report that opened the incident, for the incident page's trace link.
    Column("trace_id", String(32)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
