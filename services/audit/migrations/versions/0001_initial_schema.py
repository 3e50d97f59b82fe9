"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 08:26:34.414987
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


APPEND_ONLY_FUNCTION = """
CREATE FUNCTION audit.reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("ce_source", sa.String(length=200), nullable=False),
        sa.Column("ce_id", sa.UUID(), nullable=False),
        sa.Column("ce_type", sa.String(length=200), nullable=False),
        sa.Column("consumer", sa.String(length=200), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.SmallInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("ce_source", "ce_id", name=op.f("pk_inbox")),
        schema="audit",
    )
    op.create_table(
        "log_entries",
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ce_source", sa.String(length=200), nullable=False),
        sa.Column("ce_id", sa.UUID(), nullable=False),
        sa.Column("ce_type", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("ce_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.SmallInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column(
            "leaf", sa.LargeBinary(), nullable=False, comment="canonical JSON of the CloudEvent"
        ),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "appended_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("index", name=op.f("pk_log_entries")),
        sa.UniqueConstraint("ce_source", "ce_id", name=op.f("uq_log_entries_ce_source_ce_id")),
        schema="audit",
    )
    op.create_index(
        "ix_log_entries_subject",
        "log_entries",
        ["subject", "ce_time", "index"],
        unique=False,
        schema="audit",
    )
    op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_head")),
        schema="audit",
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
        schema="audit",
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["shard", "id"],
        unique=False,
        schema="audit",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.execute(
        "INSERT INTO audit.log_head (id, size, head_hash) "
        "VALUES (1, 0, decode(repeat('00', 32), 'hex'))"
    )
    # The log is append-only: no UPDATE, DELETE or TRUNCATE, also under replication.
    op.execute(APPEND_ONLY_FUNCTION)
    for statement in ("UPDATE OR DELETE", "TRUNCATE"):
        level = "ROW" if statement != "TRUNCATE" else "STATEMENT"
        name = "log_entries_no_" + statement.split()[0].lower()
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {statement} ON audit.log_entries "
            f"FOR EACH {level} EXECUTE FUNCTION audit.reject_change()"
        )
        op.execute(f"ALTER TABLE audit.log_entries ENABLE ALWAYS TRIGGER {name}")


def downgrade() -> None:
    op.execute("DROP TABLE audit.log_entries CASCADE")
    op.execute("DROP FUNCTION audit.reject_change()")
    op.drop_index(
        "ix_outbox_unpublished",
        table_name="outbox",
        schema="audit",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox", schema="audit")
    op.drop_table("log_head", schema="audit")
    op.drop_table("inbox", schema="audit")
