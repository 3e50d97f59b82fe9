"""notices: a notification about no obligation, finished once delivered

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 06:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "NEW PENDING DELIVERED ACKNOWLEDGED UNACKNOWLEDGED FAILED WITHDRAWN"


def upgrade() -> None:
    op.add_column(
        "notifications",
        sa.Column(
            "kind",
            sa.String(8),
            nullable=False,
            server_default="ALERT",
            comment="ALERT: about an obligation, walks the contacts until acknowledged; "
            "NOTICE: tells the party something, finished once delivered",
        ),
        schema="notification",
    )
    for column, type_ in (("obligation_id", sa.UUID()), ("rule_id", sa.String(16))):
        op.alter_column(
            "notifications",
            column,
            existing_type=type_,
            nullable=True,
            comment="none for a notice",
            schema="notification",
        )
    op.alter_column(
        "notifications",
        "status",
        existing_type=sa.String(16),
        existing_nullable=False,
        comment=f"{STATUSES} INFORMED",
        existing_comment=STATUSES,
        schema="notification",
    )


def downgrade() -> None:
    notices = "SELECT id FROM notification.notifications WHERE kind = 'NOTICE'"
    for table, column in (("attempts", "notification_id"), ("deliveries", "notification_id")):
        op.execute(f"DELETE FROM notification.{table} WHERE {column} IN ({notices})")
    op.execute("DELETE FROM notification.notifications WHERE kind = 'NOTICE'")
    for column, type_ in (("obligation_id", sa.UUID()), ("rule_id", sa.String(16))):
        op.alter_column(
            "notifications", column, existing_type=type_, nullable=False, schema="notification"
        )
    op.drop_column("notifications", "kind", schema="notification")
