"""an alert follows its duty when a merge of incidents moves it (R20)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "notifications",
        sa.Column(
            "former_obligation_ids",
            postgresql.ARRAY(postgresql.UUID(as_uuid=True)),
            nullable=False,
            server_default="{}",
            comment="R20: the same duty under the ids it had before a merge moved it; the alert "
            "carries on under `obligation_id`",
        ),
        schema="notification",
    )
    op.create_index(
        "ix_notifications_former_obligations",
        "notifications",
        ["former_obligation_ids"],
        unique=False,
        schema="notification",
        postgresql_using="gin",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_notifications_former_obligations", table_name="notifications", schema="notification"
    )
    op.drop_column("notifications", "former_obligation_ids", schema="notification")
