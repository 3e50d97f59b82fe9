"""incidents keep only the reporting party: the reporter's name and phone stay with intake

Escalation's rules ask of a reporter only its party; the name and phone an incident.reported
carried were kept here in clear. They go, so this schema holds no personal data of reporters
and escalation needs no personal-data key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE escalation.incidents SET reporter = jsonb_build_object('party', reporter->'party')"
        " WHERE reporter - 'party' <> '{}'::jsonb"
    )


def downgrade() -> None:
    # What was removed is not kept anywhere here: the rows stay as they are.
    pass
