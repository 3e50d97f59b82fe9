"""merged incidents (R20): an incident merged into another, duties moved between them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "incidents",
        sa.Column(
            "merged_into",
            postgresql.UUID(as_uuid=True),
            nullable=True,
            comment="R20: merged into this incident; its deadlines and timers rest until unmerged",
        ),
        schema="escalation",
    )
    op.add_column(
        "obligations",
        sa.Column(
            "moved_from",
            postgresql.UUID(as_uuid=True),
            nullable=True,
            comment="R20: the same duty of another incident, moved here by a merge or its undoing",
        ),
        schema="escalation",
    )
    op.add_column(
        "obligations",
        sa.Column(
            "moved_to",
            postgresql.UUID(as_uuid=True),
            nullable=True,
            comment="R20: waived here because it lives on as this obligation of another incident",
        ),
        schema="escalation",
    )
    op.create_table(
        "merge_moves",
        sa.Column("link_id", postgresql.UUID(as_uuid=True), nullable=False, comment="the merge"),
        sa.Column(
            "obligation_id",
            postgresql.UUID(as_uuid=True),
            nullable=False,
            comment="the merged incident's duty",
        ),
        sa.Column("merged_incident_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("surviving_incident_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "outcome",
            sa.String(length=8),
            nullable=False,
            comment="MOVED: lives on as `counterpart_id`; DOUBLED: waived, `counterpart_id` stands",
        ),
        sa.Column("counterpart_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "status", sa.String(length=16), nullable=False, comment="the duty's status when merged"
        ),
        sa.Column(
            "restored_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="the merge was undone",
        ),
        sa.PrimaryKeyConstraint("link_id", "obligation_id"),
        schema="escalation",
    )


def downgrade() -> None:
    op.drop_table("merge_moves", schema="escalation")
    op.drop_column("obligations", "moved_to", schema="escalation")
    op.drop_column("obligations", "moved_from", schema="escalation")
    op.drop_column("incidents", "merged_into", schema="escalation")
