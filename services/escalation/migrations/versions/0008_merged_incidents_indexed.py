"""merged incidents indexed: the deadline worker's look at what is due reads only them

Every look at the earliest deadline, and every pass over the duties, timers and omissions due,
leaves out the incidents merged into another (R20, `deadlines.not_merged`). Without an index
that meant reading every incident ever reported, once per kind of deadline and look; merged
incidents are few, and a partial index holds only them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_incidents_merged",
        "incidents",
        ["id"],
        schema="escalation",
        postgresql_where=sa.text("merged_into IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_incidents_merged", "incidents", schema="escalation")
