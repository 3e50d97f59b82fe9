"""the alerts of moved duties indexed alone, their index written at once (no pending list)

A new alert is stored unless an alert already stands for its duty under a former id (R20): a
look-up in the GIN index of `former_obligation_ids` for every alert stored. Every alert was in
that index, almost all with no former id, and GIN's fast update put each in a pending list
that every look-up reads through until it is merged: under load the look-up grew with the
alerts stored since the last merge (5 to 10 ms a batch of 40 at 2,000 to 8,000 alerts, against
0.24 with the list off). Now only the alerts of moved duties are indexed, and straight into the
index.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_notifications_former_obligations"


def upgrade() -> None:
    rebuild_index(
        postgresql_where=sa.text("former_obligation_ids <> '{}'"),
        postgresql_with={"fastupdate": "off"},
    )


def downgrade() -> None:
    rebuild_index()


def rebuild_index(**options: object) -> None:
    op.drop_index(INDEX, table_name="notifications", schema="notification")
    op.create_index(
        INDEX,
        "notifications",
        ["former_obligation_ids"],
        unique=False,
        schema="notification",
        postgresql_using="gin",
        **options,
    )
