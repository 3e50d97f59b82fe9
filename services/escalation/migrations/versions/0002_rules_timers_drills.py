"""rules timers drills

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 08:42:50.339678
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
        "drills",
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("party", sa.String(length=40), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("incident_id", name=op.f("pk_drills")),
        schema="escalation",
    )
    op.create_index(
        "ix_drills_year_party", "drills", ["year", "party"], unique=False, schema="escalation"
    )
    op.create_table(
        "subject_signs",
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", "incident_id", name=op.f("pk_subject_signs")),
        schema="escalation",
    )
    op.create_table(
        "timers",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("rule_id", sa.String(length=16), nullable=False),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timers")),
        schema="escalation",
    )
    op.create_index(
        "ix_timers_incident", "timers", ["incident_id"], unique=False, schema="escalation"
    )
    op.create_index(
        "ix_timers_pending_fire",
        "timers",
        ["fire_at"],
        unique=False,
        schema="escalation",
        postgresql_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
    )
    op.add_column(
        "incidents",
        sa.Column(
            "fired_rules",
            postgresql.ARRAY(sa.String(length=16)),
            server_default="{}",
            nullable=False,
        ),
        schema="escalation",
    )
    op.add_column(
        "incidents",
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        schema="escalation",
    )
    op.add_column(
        "obligations",
        sa.Column("trigger", sa.String(length=64), server_default="reported", nullable=False),
        schema="escalation",
    )
    op.add_column(
        "obligations",
        sa.Column("notify", sa.Boolean(), server_default="false", nullable=False),
        schema="escalation",
    )
    op.add_column(
        "obligations",
        sa.Column("drill", sa.Boolean(), server_default="false", nullable=False),
        schema="escalation",
    )
    op.add_column(
        "obligations", sa.Column("escalated_from", sa.UUID(), nullable=True), schema="escalation"
    )
    op.add_column(
        "obligations",
        sa.Column("closed_reason", sa.Text(), nullable=True, comment="why it was waived or missed"),
        schema="escalation",
    )


def downgrade() -> None:
    op.drop_column("obligations", "closed_reason", schema="escalation")
    op.drop_column("obligations", "escalated_from", schema="escalation")
    op.drop_column("obligations", "drill", schema="escalation")
    op.drop_column("obligations", "notify", schema="escalation")
    op.drop_column("obligations", "trigger", schema="escalation")
    op.drop_column("incidents", "closed_at", schema="escalation")
    op.drop_column("incidents", "fired_rules", schema="escalation")
    op.drop_index(
        "ix_timers_pending_fire",
        table_name="timers",
        schema="escalation",
        postgresql_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
    )
    op.drop_index("ix_timers_incident", table_name="timers", schema="escalation")
    op.drop_table("timers", schema="escalation")
    op.drop_table("subject_signs", schema="escalation")
    op.drop_index("ix_drills_year_party", table_name="drills", schema="escalation")
    op.drop_table("drills", schema="escalation")
