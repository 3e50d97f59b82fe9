"""living incident: news, finds and quiet spells of incidents; owners and omissions of duties

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "incidents",
        sa.Column(
            "last_news_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="the last report or action on the incident (R9: quiet after a week)",
        ),
        schema="escalation",
    )
    op.execute("UPDATE escalation.incidents SET last_news_at = reported_at")
    op.add_column(
        "incidents",
        sa.Column(
            "quiet_since",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="set when R9 found the incident quiet; cleared by news",
        ),
        schema="escalation",
    )
    op.add_column(
        "incidents",
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=True),
        schema="escalation",
    )
    op.add_column(
        "obligations",
        sa.Column("owner", sa.String(length=40), nullable=True, comment="who must act"),
        schema="escalation",
    )
    op.add_column(
        "obligations",
        sa.Column(
            "omitted_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="R11: still undone this long after its deadline",
        ),
        schema="escalation",
    )
    op.create_index(
        "ix_obligations_missed_due",
        "obligations",
        ["due_at"],
        unique=False,
        schema="escalation",
        postgresql_where=sa.text("status = 'MISSED' AND omitted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_obligations_missed_due", table_name="obligations", schema="escalation")
    op.drop_column("obligations", "omitted_at", schema="escalation")
    op.drop_column("obligations", "owner", schema="escalation")
    op.drop_column("incidents", "found_at", schema="escalation")
    op.drop_column("incidents", "quiet_since", schema="escalation")
    op.drop_column("incidents", "last_news_at", schema="escalation")
