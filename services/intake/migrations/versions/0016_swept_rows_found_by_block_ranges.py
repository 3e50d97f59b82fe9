"""the sent outbox rows, the processed inbox rows and the claimed keys found by block ranges

The retention sweeps (`RetentionPurge`, and intake's purge of expired Idempotency-Keys) were the
only readers of the outbox's sending time, the inbox's processing time and the keys' claiming
time, and each was a B-tree: an entry for every row written, read only by a sweep every ten
minutes. At 50 incidents a second those entries were about a tenth of the index entries
PostgreSQL wrote for the pipeline (the WAL census of `bench.report_to_alert --census`). The
times grow as rows are written, and rows lie in their tables in about that order, so a
block-range index (BRIN) finds the old rows as well: a summary of each megabyte of table, made
as the range fills (`autosummarize`), and nothing for each row.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 11:30:00
"""

from collections.abc import Sequence

from shared.db import (
    INBOX_SWEPT,
    OUTBOX_SWEPT,
    SweptIndex,
    swept_by_b_trees,
    swept_by_block_ranges,
)

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "intake"
SWEPT = (
    OUTBOX_SWEPT,
    INBOX_SWEPT,
    SweptIndex("ix_idempotency_keys_created", "idempotency_keys", "created_at", None),
)


def upgrade() -> None:
    swept_by_block_ranges(SCHEMA, SWEPT)


def downgrade() -> None:
    swept_by_b_trees(SCHEMA, SWEPT)
