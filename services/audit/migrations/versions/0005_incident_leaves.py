"""A leaf in the history of a second incident: links, merges and unlinks (R20)

Intake publishes a link, a merge or its undoing under the incident it keeps; the other incident
it names (`linked_incident_id`, `merged_incident_id`) must show it in its history too. Each such
leaf gets a row (incident, leaf index) here, appended with the leaf; leaves logged before are
filed from their JSON. Append-only like the log: owned by `audit_owner`, INSERT and SELECT for
`audit_writer`, the triggers of 0002 refuse UPDATE, DELETE and TRUNCATE. No foreign key to the
leaves (as for tree_nodes): TRUNCATE of the log must meet its trigger, not a key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "incident_leaves"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("incident_id", sa.String(length=200), nullable=False),
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "index", name=op.f("pk_incident_leaves")),
        schema="audit",
    )
    op.create_index("ix_incident_leaves_index", TABLE, ["index"], schema="audit")
    op.execute(
        "INSERT INTO audit.incident_leaves (incident_id, index) "
        "SELECT other, index FROM ("
        "  SELECT index, subject, coalesce("
        "    convert_from(leaf, 'UTF8')::jsonb -> 'data' ->> 'merged_incident_id', "
        "    convert_from(leaf, 'UTF8')::jsonb -> 'data' ->> 'linked_incident_id') AS other "
        "  FROM audit.log_entries "
        "  WHERE ce_type IN ('incident.linked', 'incident.merged', 'incident.unlinked')"
        ") named WHERE other IS NOT NULL AND other <> subject"
    )
    for statement, level in (("UPDATE OR DELETE", "ROW"), ("TRUNCATE", "STATEMENT")):
        name = f"{TABLE}_no_{statement.split()[0].lower()}"
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {statement} ON audit.{TABLE} "
            f"FOR EACH {level} EXECUTE FUNCTION audit.reject_change()"
        )
        op.execute(f"ALTER TABLE audit.{TABLE} ENABLE ALWAYS TRIGGER {name}")
    op.execute(f"ALTER TABLE audit.{TABLE} OWNER TO audit_owner")
    op.execute(f"REVOKE ALL ON audit.{TABLE} FROM PUBLIC")
    op.execute(f"GRANT SELECT, INSERT ON audit.{TABLE} TO audit_writer")


def downgrade() -> None:
    op.execute(f"ALTER TABLE audit.{TABLE} OWNER TO CURRENT_USER")
    op.drop_table(TABLE, schema="audit")
