"""a first report notifies the outbox's channel only when given one

`intake.first_report` notified the outbox relay's channel whenever it wrote an incident. A
NOTIFY at a commit wakes every listening backend of the database and the listener of every
service process; when intake's own relay holds the shard of the report's event, intake wakes it
in process once the call has committed (`shared.messaging.LocalRelay`) and passes no channel
(NULL): the function then notifies nobody. Given a channel, it notifies as before.

The function's text is taken as the database holds it (0012, with the settings of 0012 and
0015) and only its NOTIFY changed, so nothing else of it can drift from those revisions.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ALWAYS = "PERFORM pg_notify(p_channel, '');  -- the outbox relay's wake-up"
WHEN_ASKED = (
    "IF p_channel IS NOT NULL THEN\n"
    "            PERFORM pg_notify(p_channel, '');  -- the outbox relay's wake-up\n"
    "        END IF;  -- NULL: intake wakes its relay in process"
)


def _replace_notify(old: str, new: str) -> None:
    definition = (
        op.get_bind()
        .execute(sa.text("SELECT pg_get_functiondef('intake.first_report'::regproc)"))
        .scalar_one()
    )
    if definition.count(old) != 1:
        raise RuntimeError("intake.first_report is not as revision 0012 wrote it")
    op.execute(definition.replace(old, new))


def upgrade() -> None:
    _replace_notify(ALWAYS, WHEN_ASKED)


def downgrade() -> None:
    _replace_notify(WHEN_ASKED, ALWAYS)
