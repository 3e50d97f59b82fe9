"""the sent outbox rows and the processed inbox rows found by block ranges

The retention sweeps (`RetentionPurge`) were the only readers of the outbox's sending time and
the inbox's processing time, and each was a B-tree: an entry for every row written, read only by
a sweep every ten minutes. At 50 incidents a second those entries were about a tenth of the
index entries PostgreSQL wrote for the pipeline (the WAL census of `bench.report_to_alert
--census`). The times grow as rows are written, and rows lie in their tables in about that
order, so a block-range index (BRIN) finds the old rows as well: a summary of each megabyte of
table, made as the range fills (`autosummarize`), and nothing for each row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "console"
# (index, table, column, the B-tree's predicate, if it had one)
SWEPT = (
    ("ix_outbox_published_at", "outbox", "published_at", "published_at IS NOT NULL"),
    ("ix_inbox_processed_at", "inbox", "processed_at", None),
)


def upgrade() -> None:
    for index, table, column, _ in SWEPT:
        op.drop_index(index, table_name=table, schema=SCHEMA)
        op.create_index(
            index,
            table,
            [column],
            schema=SCHEMA,
            postgresql_using="brin",
            postgresql_with={"autosummarize": "on"},
        )


def downgrade() -> None:
    for index, table, column, predicate in SWEPT:
        op.drop_index(index, table_name=table, schema=SCHEMA)
        op.create_index(
            index,
            table,
            [column],
            schema=SCHEMA,
            postgresql_where=sa.text(predicate) if predicate else None,
        )
