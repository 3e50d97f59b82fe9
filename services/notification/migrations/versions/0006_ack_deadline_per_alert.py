"""the policy's ACK deadline kept per alert

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "notifications",
        sa.Column(
            "ack_seconds",
            sa.Float(),
            comment="the policy's ACK deadline for this alert; none: NOTIFICATION_ACK_SECONDS",
        ),
        schema="notification",
    )


def downgrade() -> None:
    op.drop_column("notifications", "ack_seconds", schema="notification")
