"""each alert claims the duties it stands for: two decisions about one duty's alert meet at a
unique key, not at locks held to their transactions' end

A duty's creation and that of the duty a merge moved it to (R20) are keyed by different
incidents, so they may be handled at once, and only one of them may alert. Each batch of new
alerts took an advisory lock per duty first, in a transaction of its own (BEGIN, the locks,
the alerts, COMMIT: four round trips for what is one write), and looked up the alerts of moved
duties in an index of their former ids. Now an alert is stored only with a claim of its duty in
`alert_duties`, and the creation of a moved duty claims the duty it came from before it looks
for that duty's alert: whichever claims a duty first decides about its alert, the other waits
for it at the key and then finds the claim. A batch of new alerts is one statement, and the
index of former ids, which nothing else reads, goes.

The claims of the alerts stored before are made here: each alert's duty and the duties it stood
for before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FORMER_IDS_INDEX = "ix_notifications_former_obligations"


def upgrade() -> None:
    op.create_table(
        "alert_duties",
        sa.Column("duty_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "notification_id",
            postgresql.UUID(as_uuid=True),
            comment="the alert that took the duty; none: a merge moved it on before any did",
        ),
        schema="notification",
    )
    op.execute(
        "INSERT INTO notification.alert_duties (duty_id, notification_id)"
        " SELECT obligation_id, id FROM notification.notifications"
        " WHERE obligation_id IS NOT NULL"
        " UNION ALL"
        " SELECT unnest(former_obligation_ids), id FROM notification.notifications"
        " ON CONFLICT (duty_id) DO NOTHING"
    )
    op.drop_index(FORMER_IDS_INDEX, table_name="notifications", schema="notification")


def downgrade() -> None:
    op.create_index(
        FORMER_IDS_INDEX,
        "notifications",
        ["former_obligation_ids"],
        unique=False,
        schema="notification",
        postgresql_using="gin",
        postgresql_where=sa.text("former_obligation_ids <> '{}'"),
        postgresql_with={"fastupdate": "off"},
    )
    op.drop_table("alert_duties", schema="notification")
