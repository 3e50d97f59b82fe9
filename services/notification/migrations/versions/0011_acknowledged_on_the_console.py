"""acknowledged on the duty console: by whom of the alerted party, when not through a link

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 17:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "notifications",
        sa.Column(
            "acknowledged_via",
            sa.String(length=200),
            nullable=True,
            comment="who acknowledged on the duty console (值班台), not a contact's link",
        ),
        schema="notification",
    )


def downgrade() -> None:
    op.drop_column("notifications", "acknowledged_via", schema="notification")
