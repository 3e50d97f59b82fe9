"""incidents listed across townships newest first: an index in the list's order

GET /v1/incidents pages by (reported_at, id), newest first; a local party's list has
ix_incidents_township_reported already.

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
    op.create_index("ix_incidents_reported", "incidents", ["reported_at", "id"], schema="intake")


def downgrade() -> None:
    op.drop_index("ix_incidents_reported", "incidents", schema="intake")
