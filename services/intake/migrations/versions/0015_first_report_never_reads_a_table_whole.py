"""a first report's reads never walk a table whole, whatever the statistics its plan was made on

`intake.first_report` keeps one plan for any values (0012), made the first time a connection
calls it, from the statistics of that moment. On a new database they say the tables are empty,
and for an empty table reading it whole looks cheapest: the look-up of the incidents naming the
report's subjects was planned as a scan of every subject of every incident, and that plan was
kept until autovacuum first analysed the table, a minute or more later. Meanwhile each report
read all the subjects written before it: 1.1 ms of the server's time a report after 14,000
reports (intake alone from a new database), against 0.45 after 7,000.

Every read of the call is by a key or walks an index in order (0012–0014), so the function
never plans a sequential scan: its plan is the same on a new database as on a full one.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 13:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER FUNCTION intake.first_report SET enable_seqscan = off")


def downgrade() -> None:
    op.execute("ALTER FUNCTION intake.first_report RESET enable_seqscan")
