"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 08:26:32.331159
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
        schema="escalation",
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column(
            "facts",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="facts as published (masked)",
        ),
        sa.Column("reporter", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        schema="escalation",
    )
    op.create_table(
        "obligations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("party", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("action_text", sa.Text(), nullable=False),
        sa.Column("rule_id", sa.String(length=16), nullable=False),
        sa.Column("plan_section", sa.String(length=32), nullable=False),
        sa.Column("deadline_name", sa.String(length=32), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.String(length=16),
            nullable=False,
            comment="PENDING MET MET_LATE MISSED WAIVED",
        ),
        sa.Column("met_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("met_by_event_id", sa.UUID(), nullable=True),
        sa.Column("source_event_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_obligations")),
        schema="escalation",
    )
    op.create_index(
        "ix_obligations_incident",
        "obligations",
        ["incident_id", "due_at"],
        unique=False,
        schema="escalation",
    )
    op.create_index(
        "ix_obligations_pending_due",
        "obligations",
        ["due_at"],
        unique=False,
        schema="escalation",
        postgresql_where=sa.text("status = 'PENDING'"),
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
        schema="escalation",
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["shard", "id"],
        unique=False,
        schema="escalation",
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_outbox_unpublished",
        table_name="outbox",
        schema="escalation",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox", schema="escalation")
    op.drop_index(
        "ix_obligations_pending_due",
        table_name="obligations",
        schema="escalation",
        postgresql_where=sa.text("status = 'PENDING'"),
    )
    op.drop_index("ix_obligations_incident", table_name="obligations", schema="escalation")
    op.drop_table("obligations", schema="escalation")
    op.drop_table("incidents", schema="escalation")
    op.drop_table("inbox", schema="escalation")
