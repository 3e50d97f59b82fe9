"""idempotency keys per caller: one caller's key neither replays nor blocks another's

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 10:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "idempotency_keys",
        sa.Column(
            "caller",
            sa.String(length=40),
            nullable=False,
            server_default="",
            comment="the party whose key it is",
        ),
        schema="intake",
    )
    # Keys kept so far were claimed by the reporter's own caller (a party speaks only for itself).
    op.execute(
        "UPDATE intake.idempotency_keys AS k SET caller = i.reporter->>'party' "
        "FROM intake.incidents AS i WHERE i.id = k.incident_id"
    )
    op.alter_column("idempotency_keys", "caller", server_default=None, schema="intake")
    op.drop_constraint("pk_idempotency_keys", "idempotency_keys", schema="intake")
    op.create_primary_key(
        "pk_idempotency_keys", "idempotency_keys", ["caller", "key"], schema="intake"
    )


def downgrade() -> None:
    op.drop_constraint("pk_idempotency_keys", "idempotency_keys", schema="intake")
    op.execute(
        "DELETE FROM intake.idempotency_keys AS k USING intake.idempotency_keys AS o "
        "WHERE k.key = o.key AND k.caller > o.caller"
    )
    op.create_primary_key("pk_idempotency_keys", "idempotency_keys", ["key"], schema="intake")
    op.drop_column("idempotency_keys", "caller", schema="intake")
