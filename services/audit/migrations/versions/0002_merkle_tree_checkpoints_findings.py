"""Merkle tree, signed checkpoints, cosignatures and findings; roles that can only append

The hash chain of 0001 gives way to an RFC 9162 Merkle tree over the same leaves: `chain_hash`
and `log_head` are dropped (both are functions of the leaves), and the tree's complete nodes
are built for every leaf already logged. The log tables move to `audit_owner`; the service
works as `audit_writer`, which may only INSERT and SELECT them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from services.audit.merkle import CompactRange

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("log_entries", "tree_nodes", "checkpoints", "cosignatures", "findings")

ROLES = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'audit_owner') THEN
        CREATE ROLE audit_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'audit_writer') THEN
        CREATE ROLE audit_writer NOLOGIN;
    END IF;
    -- A login that is no superuser must belong to both: to own the tables' migrations and to
    -- SET ROLE audit_writer for the service's own work. Not so the owner's own login (a
    -- production migration Job): the service then runs as another login, a member of
    -- audit_writer only (deploy/k8s/overlays/prod/postgres-cluster.yaml).
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND current_user <> 'audit_owner' THEN
        EXECUTE format('GRANT audit_owner, audit_writer TO %I', current_user);
    END IF;
END
$$
"""


def upgrade() -> None:
    op.execute(ROLES)
    op.create_table(
        "tree_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "index", name=op.f("pk_tree_nodes")),
        schema="audit",
    )
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "note", sa.Text(), nullable=False, comment="the signed checkpoint (C2SP signed note)"
        ),
        sa.Column(
            "signed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_checkpoints")),
        schema="audit",
    )
    op.create_table(
        "cosignatures",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness", sa.String(length=200), nullable=False, comment="the witness's vkey"),
        sa.Column("signature_line", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("size", "witness", name=op.f("pk_cosignatures")),
        schema="audit",
    )
    op.create_table(
        "findings",
        sa.Column("finding_id", sa.UUID(), nullable=False),
        sa.Column("incident_id", sa.UUID(), nullable=False),
        sa.Column("rule_id", sa.String(length=20), nullable=False),
        sa.Column("party", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("evidence", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="the audit.finding event data",
        ),
        sa.Column(
            "found_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("finding_id", name=op.f("pk_findings")),
        schema="audit",
    )
    op.create_index("ix_findings_incident", "findings", ["incident_id"], schema="audit")
    op.create_index("ix_findings_party_rule", "findings", ["party", "rule_id"], schema="audit")

    _build_tree_of_logged_leaves()
    op.drop_column("log_entries", "chain_hash", schema="audit")
    op.drop_table("log_head", schema="audit")

    for table in APPEND_ONLY:
        if table != "log_entries":  # 0001 guards it already
            _refuse_changes(table)
        op.execute(f"ALTER TABLE audit.{table} OWNER TO audit_owner")
        op.execute(f"REVOKE ALL ON audit.{table} FROM PUBLIC")
        op.execute(f"GRANT SELECT, INSERT ON audit.{table} TO audit_writer")
    op.execute("GRANT USAGE ON SCHEMA audit TO audit_owner, audit_writer")
    op.execute("GRANT SELECT, INSERT ON audit.inbox, audit.outbox TO audit_writer")
    op.execute("GRANT USAGE ON SEQUENCE audit.outbox_id_seq TO audit_writer")


def _refuse_changes(table: str) -> None:
    for statement, level in (("UPDATE OR DELETE", "ROW"), ("TRUNCATE", "STATEMENT")):
        name = f"{table}_no_{statement.split()[0].lower()}"
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {statement} ON audit.{table} "
            f"FOR EACH {level} EXECUTE FUNCTION audit.reject_change()"
        )
        op.execute(f"ALTER TABLE audit.{table} ENABLE ALWAYS TRIGGER {name}")


def _build_tree_of_logged_leaves() -> None:
    connection = op.get_bind()
    tree = CompactRange()
    nodes: list[dict] = []
    leaves = connection.execute(sa.text("SELECT leaf_hash FROM audit.log_entries ORDER BY index"))
    for (leaf_hash,) in leaves:
        nodes += [
            {"level": node.level, "index": node.index, "hash": digest}
            for node, digest in tree.append(bytes(leaf_hash))
            if node.level > 0
        ]
        if len(nodes) >= 10_000:
            _insert_nodes(connection, nodes)
            nodes = []
    _insert_nodes(connection, nodes)


def _insert_nodes(connection: sa.Connection, nodes: list[dict]) -> None:
    if nodes:
        connection.execute(
            sa.text(
                'INSERT INTO audit.tree_nodes (level, "index", hash) VALUES (:level, :index, :hash)'
            ),
            nodes,
        )


def downgrade() -> None:
    for table in APPEND_ONLY:
        op.execute(f"ALTER TABLE audit.{table} OWNER TO CURRENT_USER")
    op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_head")),
        schema="audit",
    )
    op.add_column("log_entries", sa.Column("chain_hash", sa.LargeBinary(length=32)), schema="audit")
    # The chain is a function of the leaves: rebuild it, the only rewrite this log ever allows.
    op.execute("ALTER TABLE audit.log_entries DISABLE TRIGGER log_entries_no_update")
    op.execute(
        """
        WITH RECURSIVE chain(index, chain_hash) AS (
            SELECT 0::bigint, sha256(decode(repeat('00', 32), 'hex') || leaf_hash)
            FROM audit.log_entries WHERE index = 0
            UNION ALL
            SELECT e.index, sha256(chain.chain_hash || e.leaf_hash)
            FROM chain JOIN audit.log_entries e ON e.index = chain.index + 1
        )
        UPDATE audit.log_entries e SET chain_hash = chain.chain_hash
        FROM chain WHERE e.index = chain.index
        """
    )
    op.execute("ALTER TABLE audit.log_entries ENABLE ALWAYS TRIGGER log_entries_no_update")
    op.alter_column("log_entries", "chain_hash", nullable=False, schema="audit")
    op.execute(
        "INSERT INTO audit.log_head (id, size, head_hash) "
        "SELECT 1, count(*), coalesce((SELECT chain_hash FROM audit.log_entries "
        "ORDER BY index DESC LIMIT 1), decode(repeat('00', 32), 'hex')) FROM audit.log_entries"
    )
    for table in reversed(APPEND_ONLY[1:]):
        op.drop_table(table, schema="audit")
