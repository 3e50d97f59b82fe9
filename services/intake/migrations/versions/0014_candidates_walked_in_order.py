"""a new incident's candidates walked in order, by township and category, to the page's end

`intake.first_report` answers a new incident with the nearest page (100) of the township's open
incidents of the same category in the window (R20). Its kept plan is made for any values, and
PostgreSQL's guess for a window is a handful of rows: the plan gathered every incident of the
township in the window into a bitmap, then sorted them for the nearest. In a disaster a
township's window holds thousands (4,000 rows and 4 ms of the server's time a report, measured
with intake flat out after the load runs), where the page is 100. Another kept plan walked the
county's incidents by time, every township's, testing each.

An index by township, category and time, of the incidents not merged into another (the
candidates' own filter), gives the walk both keys; and the function never plans a bitmap scan,
so the walk is an ordered scan of that index from the report's moment, stopping at the page.
The call's other reads are by key, where a plain index scan serves as well.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_incidents_candidates",
        "incidents",
        ["township_code", "category", "reported_at"],
        schema="intake",
        postgresql_where=sa.text("merged_into IS NULL"),
    )
    op.execute("ALTER FUNCTION intake.first_report SET enable_bitmapscan = off")


def downgrade() -> None:
    op.execute("ALTER FUNCTION intake.first_report RESET enable_bitmapscan")
    op.drop_index("ix_incidents_candidates", "incidents", schema="intake")
