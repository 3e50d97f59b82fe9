"""alerts listed across incidents: an index in the list's order

GET /v1/notifications without an incident pages by (created_at, id), oldest first.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 16:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_notifications_created",
        "notifications",
        ["created_at", "id"],
        schema="notification",
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_created", "notifications", schema="notification")
