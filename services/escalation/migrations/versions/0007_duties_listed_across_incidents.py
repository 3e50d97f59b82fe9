"""duties listed across incidents: an index in the list's order, and one on each incident's
township as its facts now say, which a local party's list keeps to

GET /v1/obligations pages by (due_at, id), soonest due first.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 16:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_obligations_due", "obligations", ["due_at", "id"], schema="escalation")
    op.create_index(
        "ix_incidents_township",
        "incidents",
        [sa.text("(facts ->> 'township_code')")],
        schema="escalation",
    )


def downgrade() -> None:
    op.drop_index("ix_incidents_township", "incidents", schema="escalation")
    op.drop_index("ix_obligations_due", "obligations", schema="escalation")
