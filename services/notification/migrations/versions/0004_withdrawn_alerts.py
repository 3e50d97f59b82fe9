"""withdrawn alerts: the reason an obligation no longer needs its alert

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 05:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "notifications",
        sa.Column(
            "withdrawn_reason",
            sa.Text(),
            nullable=True,
            comment="why the obligation no longer needs its alert",
        ),
        schema="notification",
    )
    op.alter_column(
        "notifications",
        "status",
        existing_type=sa.String(16),
        existing_nullable=False,
        comment="NEW PENDING DELIVERED ACKNOWLEDGED UNACKNOWLEDGED FAILED WITHDRAWN",
        existing_comment="NEW PENDING DELIVERED ACKNOWLEDGED UNACKNOWLEDGED FAILED",
        schema="notification",
    )
    op.alter_column(
        "notifications",
        "closed_at",
        existing_type=sa.DateTime(timezone=True),
        comment="walked to the end, or withdrawn",
        existing_comment="every contact tried, none acknowledged",
        schema="notification",
    )


def downgrade() -> None:
    op.alter_column(
        "notifications",
        "closed_at",
        existing_type=sa.DateTime(timezone=True),
        comment="every contact tried, none acknowledged",
        existing_comment="walked to the end, or withdrawn",
        schema="notification",
    )
    op.alter_column(
        "notifications",
        "status",
        existing_type=sa.String(16),
        existing_nullable=False,
        comment="NEW PENDING DELIVERED ACKNOWLEDGED UNACKNOWLEDGED FAILED",
        existing_comment="NEW PENDING DELIVERED ACKNOWLEDGED UNACKNOWLEDGED FAILED WITHDRAWN",
        schema="notification",
    )
    op.drop_column("notifications", "withdrawn_reason", schema="notification")
