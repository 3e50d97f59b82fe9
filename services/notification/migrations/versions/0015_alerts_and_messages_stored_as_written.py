"""an alert and its messages stored as written, not compressed on the way in

A row longer than about 2 kB is handed to PostgreSQL's toaster, which compresses its long values
(pglz) until the row is under `toast_tuple_target`, 2 kB by default. An alert (its text and the
minimised facts it is from) is about 2 kB of JSON, and so was every alert and most first
deliveries' messages: each compressed as it was stored, and copied compressed into each new
version of its row as the alert walks its contacts, for tables that keep a county's alerts of a
few years (a census of a 50/s run: every alert and eight in ten messages compressed, to about
six tenths). Rows are now compressed only above 8 kB, a page's worth; below that they are
stored as written.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 09:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("notifications", "deliveries")
# The largest target PostgreSQL takes (TOAST_TUPLE_TARGET_MAIN): about a page.
ROW_TARGET = 8160


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE notification.{table} SET (toast_tuple_target = {ROW_TARGET})")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE notification.{table} RESET (toast_tuple_target)")
