"""The findings follower's cursor: the one row `audit_writer` may update

Findings no longer come from the consumer's transaction but from a follower that reads the log
behind it. Its cursor starts at the log's current size: until now every leaf was reviewed in
the transaction that appended it. The table is outside the append-only triggers; the writer
may SELECT it and UPDATE its two columns, and neither insert nor delete a row.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "findings_cursor",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_findings_cursor_one_row")),
        sa.CheckConstraint("position >= 0", name=op.f("ck_findings_cursor_position_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings_cursor")),
        schema="audit",
    )
    op.execute(
        "INSERT INTO audit.findings_cursor (id, position) "
        "SELECT 1, coalesce(max(index) + 1, 0) FROM audit.log_entries"
    )
    op.execute("ALTER TABLE audit.findings_cursor OWNER TO audit_owner")
    op.execute("REVOKE ALL ON audit.findings_cursor FROM PUBLIC")
    op.execute(
        "GRANT SELECT, UPDATE (position, updated_at) ON audit.findings_cursor TO audit_writer"
    )


def downgrade() -> None:
    op.drop_table("findings_cursor", schema="audit")
