"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 08:26:31.368342
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_idempotency_keys")),
        schema="intake",
    )
    op.create_table(
        "inbox",
        sa.Column("ce_source", sa.String(length=200), nullable=False),
        sa.Column("ce_id", sa.UUID(), nullable=False),
        sa.Column("ce_type", sa.String(length=200), nullable=False),
        sa.Column("consumer", sa.String(length=200), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.SmallInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("ce_source", "ce_id", name=op.f("pk_inbox")),
        schema="intake",
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=32), nullable=False),
        sa.Column("township_code", sa.String(length=9), nullable=False),
        sa.Column(
            "facts",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="current facts, subjects with full ID numbers",
        ),
        sa.Column("reporter", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        schema="intake",
    )
    op.create_index(
        "ix_incidents_township_reported",
        "incidents",
        ["township_code", "reported_at"],
        unique=False,
        schema="intake",
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
        schema="intake",
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["shard", "id"],
        unique=False,
        schema="intake",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("party", sa.String(length=40), nullable=False),
        sa.Column("actor_name", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["intake.incidents.id"], name=op.f("fk_actions_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
        schema="intake",
    )
    op.create_index(
        "ix_actions_incident",
        "actions",
        ["incident_id", "occurred_at"],
        unique=False,
        schema="intake",
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column(
            "kind", sa.String(length=16), nullable=False, comment="INITIAL, FOLLOW_UP or CORRECTION"
        ),
        sa.Column("changes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("previous", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("reporter", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["intake.incidents.id"], name=op.f("fk_reports_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
        schema="intake",
    )
    op.create_index(
        "ix_reports_incident", "reports", ["incident_id", "filed_at"], unique=False, schema="intake"
    )


def downgrade() -> None:
    op.drop_index("ix_reports_incident", table_name="reports", schema="intake")
    op.drop_table("reports", schema="intake")
    op.drop_index("ix_actions_incident", table_name="actions", schema="intake")
    op.drop_table("actions", schema="intake")
    op.drop_index(
        "ix_outbox_unpublished",
        table_name="outbox",
        schema="intake",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox", schema="intake")
    op.drop_index("ix_incidents_township_reported", table_name="incidents", schema="intake")
    op.drop_table("incidents", schema="intake")
    op.drop_table("inbox", schema="intake")
    op.drop_table("idempotency_keys", schema="intake")
