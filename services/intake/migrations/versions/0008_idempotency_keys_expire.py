"""idempotency keys expire: an index on when each was claimed, for the retention worker

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 14:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_idempotency_keys_created", "idempotency_keys", ["created_at"], schema="intake"
    )


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created", "idempotency_keys", schema="intake")
