"""Re-seal personal data with the current key after a rotation (docs/operations.md).

`python -m services.intake.reseal`: rows sealed with an older key id are opened with it and
sealed again with `PII_CURRENT_KEY_ID`, one transaction per table; once it reports 0, intake
no longer needs the old key. The subjects sealed on events stay in the audit log as published:
audit needs the old key for as long as their reports are to show them in clear.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import Table, select, update

from services.intake.models import incidents, reports
from shared.db import create_engine, create_session_factory
from shared.pii import PiiCipher
from shared.settings import Settings

SEALED_COLUMNS: dict[Table, tuple[str, ...]] = {
    incidents: ("facts",),
    reports: ("changes", "previous"),
}


async def reseal(settings: Settings) -> int:
    cipher = PiiCipher.from_settings(settings)
    engine = create_engine(settings, pool_size=1)
    sessions = create_session_factory(engine)
    resealed = 0
    try:
        for table, columns in SEALED_COLUMNS.items():
            async with sessions() as session, session.begin():
                rows = (
                    await session.execute(
                        select(table.c.id, *(table.c[name] for name in columns)).with_for_update()
                    )
                ).all()
                for row in rows:
                    stale = [name for name in columns if cipher.needs_resealing(row._mapping[name])]
                    if not stale:
                        continue
                    await session.execute(
                        update(table)
                        .where(table.c.id == row.id)
                        .values(
                            {
                                name: cipher.seal_subjects(cipher.open_subjects(row._mapping[name]))
                                for name in stale
                            }
                        )
                    )
                    resealed += 1
    finally:
        await engine.dispose()
    return resealed


def main() -> None:
    print(f"{asyncio.run(reseal(Settings()))} row(s) re-sealed with the current key")


if __name__ == "__main__":
    main()
