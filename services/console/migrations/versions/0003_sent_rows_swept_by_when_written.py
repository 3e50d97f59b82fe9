"""sent outbox rows swept by when they were written

Revision 0002 made the outbox's index of sending times a block-range index. Every unsent row
has that time empty, so every block range holds one, and the relay's read of unsent rows could
be planned through that index, reading the whole table each pass (intake's relay took 1.9 ms
of the server's time a pass against 0.5). A row is written before it is sent, so the sweep now
finds the rows sent before a moment among those written before it, by a block-range index of
the writing time (`ix_outbox_created_at`), which nothing else reads and nothing changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 12:55:00
"""

from collections.abc import Sequence

from shared.db import sent_rows_found_by_creation, sent_rows_found_by_sending

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "console"


def upgrade() -> None:
    sent_rows_found_by_creation(SCHEMA)


def downgrade() -> None:
    sent_rows_found_by_sending(SCHEMA)
