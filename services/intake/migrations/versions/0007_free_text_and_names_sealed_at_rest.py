"""report texts, action notes, actors' names (of actions and links) and reporters' phones sealed

The columns become JSONB holding `{"sealed": {kid, nonce, ct}}` (shared/pii.py), and the rows
written before are sealed here with the current personal-data key: the migration of intake
holds intake's key (PII_KEYS), and refuses to leave clear text behind without one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from shared.pii import PiiCipher
from shared.settings import Settings

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Columns holding one value each, sealed under the column's name.
VALUE_COLUMNS = {
    "reports": ("text",),
    "actions": ("note", "actor_name"),
    "incident_links": ("actor_name", "unlinked_actor_name"),
}
# Columns holding a reporter, whose phone is sealed.
REPORTER_TABLES = ("incidents", "reports")


def _cipher() -> PiiCipher:
    settings = context.config.attributes.get("settings") or Settings()
    return PiiCipher.from_settings(settings)


def _rows(table: str, columns: tuple[str, ...], where: str) -> list[sa.Row]:
    query = f"SELECT id, {', '.join(columns)} FROM intake.{table} WHERE {where}"
    return list(op.get_bind().execute(sa.text(query)).all())


def _update(table: str, row_id: object, values: dict[str, object]) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    sealed = postgresql.JSONB(none_as_null=True)
    statement = sa.text(f"UPDATE intake.{table} SET {assignments} WHERE id = :id").bindparams(
        *(sa.bindparam(name, type_=sealed) for name in values)
    )
    op.get_bind().execute(statement, {**values, "id": row_id})


def upgrade() -> None:
    for table, columns in VALUE_COLUMNS.items():
        for column in columns:
            op.alter_column(
                table,
                column,
                type_=postgresql.JSONB(),
                postgresql_using=f"to_jsonb({column})",
                schema="intake",
            )
    clear_values = {
        table: _rows(
            table,
            columns,
            " OR ".join(f"jsonb_typeof({column}) = 'string'" for column in columns),
        )
        for table, columns in VALUE_COLUMNS.items()
    }
    clear_phones = {
        table: _rows(table, ("reporter",), "jsonb_typeof(reporter->'phone') = 'string'")
        for table in REPORTER_TABLES
    }
    if not any(clear_values.values()) and not any(clear_phones.values()):
        return
    cipher = _cipher()
    if not cipher.keys:
        raise RuntimeError(
            "rows hold report texts, notes, names or phones in clear: run this migration with "
            "intake's PII_KEYS and PII_CURRENT_KEY_ID so it seals them"
        )
    for table, rows in clear_values.items():
        for row in rows:
            values = {
                column: cipher.seal_value(row._mapping[column], column)
                for column in VALUE_COLUMNS[table]
            }
            _update(table, row.id, values)
    for table, rows in clear_phones.items():
        for row in rows:
            _update(table, row.id, {"reporter": cipher.seal_reporter(row.reporter)})


def downgrade() -> None:
    cipher = _cipher()
    for table in REPORTER_TABLES:
        for row in _rows(table, ("reporter",), "reporter ? 'phone'"):
            _update(table, row.id, {"reporter": cipher.open_subjects(row.reporter)})
    for table, columns in VALUE_COLUMNS.items():
        for row in _rows(table, columns, "true"):
            values = {column: cipher.open_value(row._mapping[column], column) for column in columns}
            _update(table, row.id, values)
        for column in columns:
            op.alter_column(
                table,
                column,
                type_=sa.String(length=64) if column.endswith("actor_name") else sa.Text(),
                postgresql_using=f"{column} #>> '{{}}'",
                schema="intake",
            )
