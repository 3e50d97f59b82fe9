"""the log's leaves stored as written, not compressed or moved out of their rows

A row longer than about 2 kB is handed to PostgreSQL's toaster, which compresses its long values
(pglz) and, if that is not enough, moves them to the table's TOAST table (a row and an index
entry there for each), until the row is under `toast_tuple_target`, 2 kB by default. A leaf's
sealed fields are ciphertext, which compresses poorly: of a 50/s run's leaves about one in
eleven was compressed and one in eight moved out, each then read back through the TOAST index
by the findings follower. Leaves are now left as written below 8 kB, a page's worth; the log
is only appended to, so no row is ever copied with them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 09:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The largest target PostgreSQL takes (TOAST_TUPLE_TARGET_MAIN): about a page.
ROW_TARGET = 8160


def upgrade() -> None:
    op.execute(f"ALTER TABLE audit.log_entries SET (toast_tuple_target = {ROW_TARGET})")


def downgrade() -> None:
    op.execute("ALTER TABLE audit.log_entries RESET (toast_tuple_target)")
