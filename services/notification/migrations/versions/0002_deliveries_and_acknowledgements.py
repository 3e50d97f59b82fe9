"""deliveries and acknowledgements

One delivery row per (alert, contact) with its own state, attempts and next attempt; alerts
walk their contact list on acknowledgement timeouts. Alerts still undelivered under the old
scheme start over as NEW, so the dispatcher sends them through the new one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 08:48:53.504966
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("notification_id", sa.UUID(), nullable=False),
        sa.Column("contact_index", sa.SmallInteger(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column(
            "target",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="the contact as in the directory",
        ),
        sa.Column(
            "contact", sa.Text(), nullable=False, comment="the contact as shown, secrets cut"
        ),
        sa.Column(
            "status",
            sa.String(length=16),
            nullable=False,
            comment="PENDING SENDING DELIVERED FAILED CANCELLED",
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "lease_id", sa.UUID(), nullable=True, comment="fences out a worker whose lease ran out"
        ),
        sa.Column(
            "message",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="what the contact is sent",
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notification.notifications.id"],
            name=op.f("fk_deliveries_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "notification_id",
            "contact_index",
            name=op.f("uq_deliveries_notification_id_contact_index"),
        ),
        schema="notification",
    )
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["channel", "next_attempt_at"],
        unique=False,
        schema="notification",
        postgresql_where=sa.text("status IN ('PENDING', 'SENDING')"),
    )
    op.add_column(
        "attempts", sa.Column("delivery_id", sa.UUID(), nullable=True), schema="notification"
    )
    op.add_column(
        "attempts",
        sa.Column(
            "gateway_code",
            sa.String(length=64),
            nullable=True,
            comment="the gateway's own answer code, e.g. errcode",
        ),
        schema="notification",
    )
    op.create_foreign_key(
        op.f("fk_attempts_delivery_id_deliveries"),
        "attempts",
        "deliveries",
        ["delivery_id"],
        ["id"],
        source_schema="notification",
        referent_schema="notification",
    )
    op.add_column(
        "notifications",
        sa.Column(
            "contacts",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=True,
            comment="the contacts to walk, fixed when delivery starts",
        ),
        schema="notification",
    )
    op.add_column(
        "notifications",
        sa.Column(
            "contact_index",
            sa.SmallInteger(),
            nullable=True,
            comment="the contact being alerted now",
        ),
        schema="notification",
    )
    op.add_column(
        "notifications",
        sa.Column(
            "ack_due_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="then the next contact is alerted",
        ),
        schema="notification",
    )
    op.add_column(
        "notifications",
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        schema="notification",
    )
    op.add_column(
        "notifications",
        sa.Column("acknowledged_contact_index", sa.SmallInteger(), nullable=True),
        schema="notification",
    )
    op.add_column(
        "notifications",
        sa.Column(
            "closed_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="every contact tried, none acknowledged",
        ),
        schema="notification",
    )
    op.alter_column(
        "notifications",
        "alert",
        existing_type=postgresql.JSONB(astext_type=sa.Text()),
        comment="the alert and the minimised facts it is from",
        existing_comment="the rendered alert, as sent",
        existing_nullable=False,
        schema="notification",
    )
    op.alter_column(
        "notifications",
        "status",
        existing_type=sa.VARCHAR(length=16),
        comment="NEW PENDING DELIVERED ACKNOWLEDGED UNACKNOWLEDGED FAILED",
        existing_comment="PENDING SENDING DELIVERED FAILED",
        existing_nullable=False,
        schema="notification",
    )
    op.alter_column(
        "notifications",
        "delivered_at",
        existing_type=postgresql.TIMESTAMP(timezone=True),
        comment="first delivery to any contact",
        existing_nullable=True,
        schema="notification",
    )
    op.execute(
        "UPDATE notification.notifications SET status = 'NEW' "
        "WHERE status IN ('PENDING', 'SENDING')"
    )
    op.drop_index(
        op.f("ix_notifications_due"),
        table_name="notifications",
        schema="notification",
        postgresql_where=sa.text("status IN ('PENDING', 'SENDING')"),
    )
    op.create_index(
        "ix_notifications_ack_due",
        "notifications",
        ["ack_due_at"],
        unique=False,
        schema="notification",
        postgresql_where=sa.text("status = 'DELIVERED'"),
    )
    op.create_index(
        "ix_notifications_new",
        "notifications",
        ["created_at"],
        unique=False,
        schema="notification",
        postgresql_where=sa.text("status = 'NEW'"),
    )
    op.drop_column("notifications", "lease_until", schema="notification")
    op.drop_column("notifications", "next_attempt_at", schema="notification")
    op.drop_column("notifications", "rounds", schema="notification")


def downgrade() -> None:
    op.execute(
        "UPDATE notification.notifications SET status = CASE "
        "WHEN status IN ('NEW', 'PENDING') THEN 'PENDING' "
        "WHEN status IN ('ACKNOWLEDGED', 'UNACKNOWLEDGED') THEN 'DELIVERED' "
        "ELSE status END"
    )
    op.add_column(
        "notifications",
        sa.Column(
            "rounds", sa.INTEGER(), server_default=sa.text("0"), autoincrement=False, nullable=False
        ),
        schema="notification",
    )
    op.add_column(
        "notifications",
        sa.Column(
            "next_attempt_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            autoincrement=False,
            nullable=False,
        ),
        schema="notification",
    )
    op.add_column(
        "notifications",
        sa.Column(
            "lease_until", postgresql.TIMESTAMP(timezone=True), autoincrement=False, nullable=True
        ),
        schema="notification",
    )
    op.drop_index(
        "ix_notifications_new",
        table_name="notifications",
        schema="notification",
        postgresql_where=sa.text("status = 'NEW'"),
    )
    op.drop_index(
        "ix_notifications_ack_due",
        table_name="notifications",
        schema="notification",
        postgresql_where=sa.text("status = 'DELIVERED'"),
    )
    op.create_index(
        op.f("ix_notifications_due"),
        "notifications",
        ["next_attempt_at"],
        unique=False,
        schema="notification",
        postgresql_where=sa.text("status IN ('PENDING', 'SENDING')"),
    )
    op.alter_column(
        "notifications",
        "delivered_at",
        existing_type=postgresql.TIMESTAMP(timezone=True),
        comment=None,
        existing_comment="first delivery to any contact",
        existing_nullable=True,
        schema="notification",
    )
    op.alter_column(
        "notifications",
        "status",
        existing_type=sa.VARCHAR(length=16),
        comment="PENDING SENDING DELIVERED FAILED",
        existing_comment="NEW PENDING DELIVERED ACKNOWLEDGED UNACKNOWLEDGED FAILED",
        existing_nullable=False,
        schema="notification",
    )
    op.alter_column(
        "notifications",
        "alert",
        existing_type=postgresql.JSONB(astext_type=sa.Text()),
        comment="the rendered alert, as sent",
        existing_comment="the alert and the minimised facts it is from",
        existing_nullable=False,
        schema="notification",
    )
    op.drop_column("notifications", "closed_at", schema="notification")
    op.drop_column("notifications", "acknowledged_contact_index", schema="notification")
    op.drop_column("notifications", "acknowledged_at", schema="notification")
    op.drop_column("notifications", "ack_due_at", schema="notification")
    op.drop_column("notifications", "contact_index", schema="notification")
    op.drop_column("notifications", "contacts", schema="notification")
    op.drop_constraint(
        op.f("fk_attempts_delivery_id_deliveries"),
        "attempts",
        schema="notification",
        type_="foreignkey",
    )
    op.drop_column("attempts", "gateway_code", schema="notification")
    op.drop_column("attempts", "delivery_id", schema="notification")
    op.drop_index(
        "ix_deliveries_due",
        table_name="deliveries",
        schema="notification",
        postgresql_where=sa.text("status IN ('PENDING', 'SENDING')"),
    )
    op.drop_table("deliveries", schema="notification")
