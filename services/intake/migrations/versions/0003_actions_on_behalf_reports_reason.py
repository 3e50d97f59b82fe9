"""actions on behalf of their owner, with reason and addressee; reports' reason

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 07:50:00.000000
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
        "actions",
        sa.Column(
            "on_behalf_of",
            sa.String(length=40),
            nullable=True,
            comment="the owner it was recorded for, one rung down",
        ),
        schema="intake",
    )
    op.add_column(
        "actions",
        sa.Column(
            "reason",
            sa.Text(),
            nullable=True,
            comment="why on the owner's behalf, or why closed before found",
        ),
        schema="intake",
    )
    op.add_column(
        "actions",
        sa.Column(
            "to_party",
            sa.String(length=40),
            nullable=True,
            comment="REPORTED: the party reported to",
        ),
        schema="intake",
    )
    op.add_column(
        "reports",
        sa.Column("reason", sa.Text(), nullable=True, comment="why the facts were corrected"),
        schema="intake",
    )


def downgrade() -> None:
    op.drop_column("reports", "reason", schema="intake")
    op.drop_column("actions", "to_party", schema="intake")
    op.drop_column("actions", "reason", schema="intake")
    op.drop_column("actions", "on_behalf_of", schema="intake")
