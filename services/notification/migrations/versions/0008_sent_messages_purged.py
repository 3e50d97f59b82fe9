"""a finished delivery's message (its text and acknowledgement link) is emptied after its period

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        "deliveries",
        "message",
        existing_type=postgresql.JSONB(),
        nullable=True,
        comment="what the contact is sent; emptied once finished and past its retention",
        schema="notification",
    )
    op.create_index(
        "ix_deliveries_messages_kept",
        "deliveries",
        ["created_at"],
        schema="notification",
        postgresql_where=sa.text(
            "message IS NOT NULL AND status IN ('DELIVERED', 'FAILED', 'CANCELLED')"
        ),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_messages_kept", "deliveries", schema="notification")
    op.execute("UPDATE notification.deliveries SET message = '{}' WHERE message IS NULL")
    op.alter_column(
        "deliveries",
        "message",
        existing_type=postgresql.JSONB(),
        nullable=False,
        comment="what the contact is sent",
        schema="notification",
    )
