"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 08:26:33.380507
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
        schema="notification",
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("obligation_id", sa.UUID(), nullable=False),
        sa.Column("party", sa.String(length=40), nullable=False),
        sa.Column("rule_id", sa.String(length=16), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column(
            "alert",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="the rendered alert, as sent",
        ),
        sa.Column(
            "status",
            sa.String(length=16),
            nullable=False,
            comment="PENDING SENDING DELIVERED FAILED",
        ),
        sa.Column("rounds", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("obligation_id", name=op.f("uq_notifications_obligation_id")),
        schema="notification",
    )
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["next_attempt_at"],
        unique=False,
        schema="notification",
        postgresql_where=sa.text("status IN ('PENDING', 'SENDING')"),
    )
    op.create_index(
        "ix_notifications_incident",
        "notifications",
        ["incident_id", "party"],
        unique=False,
        schema="notification",
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
        schema="notification",
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["shard", "id"],
        unique=False,
        schema="notification",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("notification_id", sa.UUID(), nullable=False),
        sa.Column("contact_index", sa.SmallInteger(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.notifications.id"],
            name=op.f("fk_attempts_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
        schema="notification",
    )
    op.create_index(
        "ix_attempts_notification",
        "attempts",
        ["notification_id", "attempted_at"],
        unique=False,
        schema="notification",
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_notification", table_name="attempts", schema="notification")
    op.drop_table("attempts", schema="notification")
    op.drop_index(
        "ix_outbox_unpublished",
        table_name="outbox",
        schema="notification",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox", schema="notification")
    op.drop_index("ix_notifications_incident", table_name="notifications", schema="notification")
    op.drop_index(
        "ix_notifications_due",
        table_name="notifications",
        schema="notification",
        postgresql_where=sa.text("status IN ('PENDING', 'SENDING')"),
    )
    op.drop_table("notifications", schema="notification")
    op.drop_table("inbox", schema="notification")
