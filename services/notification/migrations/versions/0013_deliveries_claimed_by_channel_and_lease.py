"""the deliveries being sent indexed by their lease, so that a dispatcher's pass reads a few
rows however many deliveries wait

A pass claims the due deliveries of each channel and reads when the next thing is due. It read
the channels with anything due as a walk of every due delivery, the earliest retry as a walk of
every pending one, and the earliest lease to run out as a walk of every delivery being sent:
its cost grew with the deliveries waiting, so the larger a backlog, the dearer every pass that
drained it (6.5 ms a pass in a flat-out run of the bench). The channels are now found one index
probe each, the earliest retry of each channel is the first of its index, and the leases that
run out are read by this index, in their order.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_deliveries_leased"


def upgrade() -> None:
    op.create_index(
        INDEX,
        "deliveries",
        ["lease_until"],
        unique=False,
        schema="notification",
        postgresql_where=sa.text("status = 'SENDING'"),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="deliveries", schema="notification")
