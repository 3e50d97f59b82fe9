"""sent outbox rows keep where the broker put them; both tables get a retention purge

A broker that forgets (an empty broker restarted, an unclean leader election) is noticed by
comparing the partition, offset and cluster id recorded here with what it holds, and the rows
it lost are published again (shared/messaging.py). Rows sent before this revision have no
placement and are never sent again. The indexes serve that comparison and the purge of rows past
their retention (`OUTBOX_RETENTION_HOURS`, `INBOX_RETENTION_HOURS`).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 14:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notification"


def upgrade() -> None:
    op.add_column("outbox", sa.Column("partition", sa.SmallInteger()), schema=SCHEMA)
    op.add_column("outbox", sa.Column("offset", sa.BigInteger()), schema=SCHEMA)
    op.add_column("outbox", sa.Column("cluster_id", sa.String(length=200)), schema=SCHEMA)
    op.create_index(
        "ix_outbox_placement",
        "outbox",
        ["cluster_id", "topic", "partition", "offset"],
        schema=SCHEMA,
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    op.create_index(
        "ix_outbox_published_at",
        "outbox",
        ["published_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    op.create_index("ix_inbox_processed_at", "inbox", ["processed_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_inbox_processed_at", table_name="inbox", schema=SCHEMA)
    op.drop_index("ix_outbox_published_at", table_name="outbox", schema=SCHEMA)
    op.drop_index("ix_outbox_placement", table_name="outbox", schema=SCHEMA)
    for column in ("cluster_id", "offset", "partition"):
        op.drop_column("outbox", column, schema=SCHEMA)
