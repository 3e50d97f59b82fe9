"""the sent outbox rows and the processed inbox rows found by block ranges

The outbox's sending time and the inbox's processing time, read only by the retention
sweeps, are block-range indexes instead of B-trees, as in intake's revision 0016
(`shared.db.SWEPT_BY_TIME`): writing a row adds no entry to them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 11:30:00
"""

from collections.abc import Sequence

from shared.db import INBOX_SWEPT, OUTBOX_SWEPT, swept_by_b_trees, swept_by_block_ranges

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "audit"
SWEPT = (
    OUTBOX_SWEPT,
    INBOX_SWEPT,
)


def upgrade() -> None:
    swept_by_block_ranges(SCHEMA, SWEPT)


def downgrade() -> None:
    swept_by_b_trees(SCHEMA, SWEPT)
