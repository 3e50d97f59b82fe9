"""one event, several reports (R20): subjects by id, links and merges, linked reports

Incidents reported before this revision are not matched by subject id: their subjects are
sealed and a migration holds no key. A report naming such a subject opens an incident of its
own, which people may link or merge.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "incidents",
        sa.Column("merged_into", sa.UUID(), comment="the incident it was merged into (R20)"),
        schema="intake",
    )
    op.add_column(
        "reports",
        sa.Column(
            "stated",
            postgresql.JSONB(astext_type=sa.Text()),
            comment="LINKED: the facts as its source stated them",
        ),
        schema="intake",
    )
    op.add_column(
        "reports",
        sa.Column(
            "external_ref", sa.String(length=64), comment="LINKED: the source's own reference"
        ),
        schema="intake",
    )
    op.add_column(
        "reports",
        sa.Column("linked_by", sa.String(length=16), comment="LINKED: SUBJECT_ID or EXTERNAL_REF"),
        schema="intake",
    )
    op.add_column(
        "reports",
        sa.Column("split_into", sa.UUID(), comment="LINKED, then unlinked: its own incident"),
        schema="intake",
    )
    op.alter_column(
        "reports",
        "kind",
        existing_type=sa.String(length=16),
        comment="INITIAL, FOLLOW_UP, CORRECTION, or LINKED: another source's first report (R20)",
        existing_comment="INITIAL, FOLLOW_UP or CORRECTION",
        existing_nullable=False,
        schema="intake",
    )
    op.create_table(
        "incident_subjects",
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["intake.incidents.id"],
            name=op.f("fk_incident_subjects_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("incident_id", "subject_id", name=op.f("pk_incident_subjects")),
        schema="intake",
    )
    op.create_index(
        "ix_incident_subjects_subject",
        "incident_subjects",
        ["subject_id"],
        unique=False,
        schema="intake",
    )
    op.create_table(
        "incident_links",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("linked_incident_id", sa.UUID(), nullable=False),
        sa.Column(
            "kind",
            sa.String(length=8),
            nullable=False,
            comment="LINK, or MERGE (linked_incident_id merged)",
        ),
        sa.Column("party", sa.String(length=40), nullable=False),
        sa.Column("actor_name", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "changes",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="facts of incident_id the merge set",
        ),
        sa.Column(
            "previous",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="the facts they replaced",
        ),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unlinked_at", sa.DateTime(timezone=True)),
        sa.Column("unlinked_by", sa.String(length=40)),
        sa.Column("unlinked_actor_name", sa.String(length=64)),
        sa.Column("unlink_reason", sa.Text()),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["intake.incidents.id"],
            name=op.f("fk_incident_links_incident_id_incidents"),
        ),
        sa.ForeignKeyConstraint(
            ["linked_incident_id"],
            ["intake.incidents.id"],
            name=op.f("fk_incident_links_linked_incident_id_incidents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_links")),
        schema="intake",
    )
    op.create_index(
        "ix_incident_links_incident", "incident_links", ["incident_id"], schema="intake"
    )
    op.create_index(
        "ix_incident_links_linked", "incident_links", ["linked_incident_id"], schema="intake"
    )


def downgrade() -> None:
    op.drop_index("ix_incident_links_linked", table_name="incident_links", schema="intake")
    op.drop_index("ix_incident_links_incident", table_name="incident_links", schema="intake")
    op.drop_table("incident_links", schema="intake")
    op.drop_index("ix_incident_subjects_subject", table_name="incident_subjects", schema="intake")
    op.drop_table("incident_subjects", schema="intake")
    op.drop_column("reports", "split_into", schema="intake")
    op.drop_column("reports", "linked_by", schema="intake")
    op.drop_column("reports", "external_ref", schema="intake")
    op.drop_column("reports", "stated", schema="intake")
    op.drop_column("incidents", "merged_into", schema="intake")
