"""Per-incident data keys: personal data in leaves is sealed, and erased by forgetting the key

From this revision on, the personal fields of an event (people's names, phones, the subjects,
free text) are sealed in its leaf under a data key of the incident it is published under (AES-GCM,
`services/audit/personal.py`); the leaf hash commits to the ciphertext. The key is kept here,
wrapped under the service's key-encryption key, with the time the incident closed; the retention
job erases it (`wrapped` set to NULL) once the policy's period has passed, and the leaves, their
hashes, every proof and checkpoint stay as they are.

Leaves appended before this revision committed to their personal data in clear: they cannot be
sealed now without changing their hashes (and every root and checkpoint signed over them), so
they are left as they are, masked for readers without pii:read, and not erasable by this
scheme. Erasure applies to leaves written from this revision on.

Findings, reviews and commendations or disciplines written from this revision on keep their
personal fields (a finding's detail and quoted facts, a review's reason, the person recorded)
sealed the same way in their `data`; rows written before stay as they are.

Not append-only: `audit_writer` may INSERT, SELECT, and UPDATE the closing time and the key
(to erase it); no DELETE, so that the row says when the key was erased.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "data_keys"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("incident", sa.String(length=200), nullable=False),
        sa.Column("wrapped", postgresql.JSONB(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("incident", name=op.f("pk_data_keys")),
        sa.CheckConstraint(
            "(wrapped IS NULL) = (erased_at IS NOT NULL)", name=op.f("ck_data_keys_erased_or_kept")
        ),
        schema="audit",
    )
    # The retention job's one question: kept keys of incidents closed before a moment.
    op.create_index(
        "ix_data_keys_kept_closed",
        TABLE,
        ["closed_at"],
        schema="audit",
        postgresql_where=sa.text("wrapped IS NOT NULL AND closed_at IS NOT NULL"),
    )
    op.execute(f"ALTER TABLE audit.{TABLE} OWNER TO audit_owner")
    op.execute(f"REVOKE ALL ON audit.{TABLE} FROM PUBLIC")
    op.execute(
        f"GRANT SELECT, INSERT, UPDATE (closed_at, wrapped, erased_at) ON audit.{TABLE} "
        "TO audit_writer"
    )


def downgrade() -> None:
    op.execute(f"ALTER TABLE audit.{TABLE} OWNER TO CURRENT_USER")
    op.drop_table(TABLE, schema="audit")
