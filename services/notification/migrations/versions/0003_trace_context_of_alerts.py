"""trace context of alerts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 09:25:29.347237
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "deliveries",
        sa.Column(
            "trace_headers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        schema="notification",
    )
    op.add_column(
        "notifications",
        sa.Column(
            "trace_headers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
            comment="W3C trace context of the routing decision, so sends join the incident's trace",
        ),
        schema="notification",
    )


def downgrade() -> None:
    op.drop_column("notifications", "trace_headers", schema="notification")
    op.drop_column("deliveries", "trace_headers", schema="notification")
