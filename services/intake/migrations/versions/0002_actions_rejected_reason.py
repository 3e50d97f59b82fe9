"""actions rejected reason

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 08:55:29.173761
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "actions",
        sa.Column(
            "rejected_reason",
            sa.Text(),
            nullable=True,
            comment="why escalation did not apply it, if it did not",
        ),
        schema="intake",
    )


def downgrade() -> None:
    op.drop_column("actions", "rejected_reason", schema="intake")
