"""a source's references looked up by their incident

Matching a report to an open incident of the same event (R20) reads the references each
candidate incident is known by (`intake.first_report`, `linking.open_incidents`), and so does
the incident list's search. Nothing indexed the references by incident: each such read went
through every reference ever received, which grows with every report the platform sends.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 23:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_external_refs_incident", "external_refs", ["incident_id"], schema="intake")


def downgrade() -> None:
    op.drop_index("ix_external_refs_incident", "external_refs", schema="intake")
