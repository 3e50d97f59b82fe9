"""external references: one incident per source and reference

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 09:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "external_refs",
        sa.Column("source_party", sa.String(length=40), nullable=False),
        sa.Column("external_ref", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column(
            "request_hash",
            sa.String(length=64),
            nullable=False,
            comment="of the last report under it",
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("source_party", "external_ref", name=op.f("pk_external_refs")),
        schema="intake",
    )


def downgrade() -> None:
    op.drop_table("external_refs", schema="intake")
