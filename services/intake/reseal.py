"""Re-seal personal data with the current key after a rotation (docs/operations.md).

`sqjz-reseal`: rows sealed with an older key id are opened with it and
sealed again with `PII_CURRENT_KEY_ID`, one transaction per table; once it reports 0, intake
no longer needs the old key. The subjects sealed on events stay in the audit log as published:
audit needs the old key for as long as their reports are to show them in clear.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sqlalchemy import Row, Table, select, update

from services.intake.models import actions, incident_links, incidents, reports
from shared.db import create_engine, create_session_factory
from shared.pii import PiiCipher
from shared.settings import Settings

# Columns holding facts or a reporter: a JSON object some of whose fields are sealed.
SEALED_FIELD_COLUMNS: dict[Table, tuple[str, ...]] = {
    incidents: ("facts", "reporter"),
    reports: ("changes", "previous", "stated", "reporter"),
    incident_links: ("changes", "previous"),
}
# Columns holding one sealed value each (`PiiCipher.seal_value`, under the column's name).
SEALED_VALUE_COLUMNS: dict[Table, tuple[str, ...]] = {
    reports: ("text",),
    actions: ("actor_name", "note"),
    incident_links: ("actor_name", "unlinked_actor_name"),
}


def _resealed(cipher: PiiCipher, table: Table, row: Row) -> dict[str, Any]:
    """The columns of `row` sealed with another key than the current one, sealed again."""
    values: dict[str, Any] = {}
    for name in SEALED_FIELD_COLUMNS.get(table, ()):
        stored = row._mapping[name]
        if stored is not None and cipher.needs_resealing(stored):
            values[name] = cipher.resealed_fields(stored)
    for name in SEALED_VALUE_COLUMNS.get(table, ()):
        if cipher.value_needs_resealing(row._mapping[name]):
            values[name] = cipher.resealed_value(row._mapping[name], name)
    return values


async def reseal(settings: Settings) -> int:
    cipher = PiiCipher.from_settings(settings)
    engine = create_engine(settings, pool_size=1, application_name="intake-reseal")
    sessions = create_session_factory(engine)
    resealed = 0
    try:
        for table in (*SEALED_FIELD_COLUMNS, actions):
            columns = (*SEALED_FIELD_COLUMNS.get(table, ()), *SEALED_VALUE_COLUMNS.get(table, ()))
            async with sessions() as session, session.begin():
                rows = (
                    await session.execute(
                        select(table.c.id, *(table.c[name] for name in columns)).with_for_update()
                    )
                ).all()
                for row in rows:
                    values = _resealed(cipher, table, row)
                    if values:
                        await session.execute(
                            update(table).where(table.c.id == row.id).values(values)
                        )
                        resealed += 1
    finally:
        await engine.dispose()
    return resealed


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(
        prog="sqjz-reseal",
        description="Seal intake's personal data again under the current key (PII_CURRENT_KEY_ID), "
        "after a key rotation; reads DATABASE_URL and PII_KEYS. Says how many rows it re-sealed: "
        "run it until it says 0.",
    ).parse_args(argv)
    print(f"{asyncio.run(reseal(Settings()))} row(s) re-sealed with the current key")


if __name__ == "__main__":
    main()
