"""Finding reviews and R15's commendations and disciplines, append-only like the log

A finding is judged by people: each review (confirmed or dismissed, with the reason) is a row,
and a later one counts without the earlier being lost. R15's records are rows of their own.
Both tables belong to `audit_owner`; `audit_writer` may INSERT and SELECT them, and the triggers
of 0002 refuse UPDATE, DELETE and TRUNCATE.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("finding_reviews", "accountability_records")


def upgrade() -> None:
    op.create_table(
        "finding_reviews",
        sa.Column("review_id", sa.UUID(), nullable=False),
        sa.Column("finding_id", sa.UUID(), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="the finding.reviewed event data",
        ),
        sa.CheckConstraint(
            "decision IN ('CONFIRMED', 'DISMISSED')", name=op.f("ck_finding_reviews_decision_known")
        ),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["audit.findings.finding_id"],
            name=op.f("fk_finding_reviews_finding_id_findings"),
        ),
        sa.PrimaryKeyConstraint("review_id", name=op.f("pk_finding_reviews")),
        schema="audit",
    )
    op.create_index(
        "ix_finding_reviews_finding",
        "finding_reviews",
        ["finding_id", "reviewed_at"],
        schema="audit",
    )
    op.create_index(
        "ix_finding_reviews_incident", "finding_reviews", ["incident_id"], schema="audit"
    )
    op.create_table(
        "accountability_records",
        sa.Column("record_id", sa.UUID(), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="the accountability.recorded event data",
        ),
        sa.CheckConstraint(
            "kind IN ('COMMENDATION', 'DISCIPLINE')",
            name=op.f("ck_accountability_records_kind_known"),
        ),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_accountability_records")),
        schema="audit",
    )
    op.create_index(
        "ix_accountability_records_incident",
        "accountability_records",
        ["incident_id", "recorded_at"],
        schema="audit",
    )
    for table in APPEND_ONLY:
        for statement, level in (("UPDATE OR DELETE", "ROW"), ("TRUNCATE", "STATEMENT")):
            name = f"{table}_no_{statement.split()[0].lower()}"
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {statement} ON audit.{table} "
                f"FOR EACH {level} EXECUTE FUNCTION audit.reject_change()"
            )
            op.execute(f"ALTER TABLE audit.{table} ENABLE ALWAYS TRIGGER {name}")
        op.execute(f"ALTER TABLE audit.{table} OWNER TO audit_owner")
        op.execute(f"REVOKE ALL ON audit.{table} FROM PUBLIC")
        op.execute(f"GRANT SELECT, INSERT ON audit.{table} TO audit_writer")


def downgrade() -> None:
    for table in APPEND_ONLY:
        op.execute(f"ALTER TABLE audit.{table} OWNER TO CURRENT_USER")
    op.drop_table("accountability_records", schema="audit")
    op.drop_table("finding_reviews", schema="audit")
