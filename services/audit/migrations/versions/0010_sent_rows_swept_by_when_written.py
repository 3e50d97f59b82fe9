"""sent outbox rows swept by when they were written

As intake's revision 0018: the outbox's block-range index of sending times, which the
relay's passes paid for, gives way to one of writing times, by which the sweep finds
the rows sent before its cutoff (`ix_outbox_created_at`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 12:55:00
"""

from collections.abc import Sequence

from shared.db import sent_rows_found_by_creation, sent_rows_found_by_sending

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "audit"


def upgrade() -> None:
    sent_rows_found_by_creation(SCHEMA)


def downgrade() -> None:
    sent_rows_found_by_sending(SCHEMA)
