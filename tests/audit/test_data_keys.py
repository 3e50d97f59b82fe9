"""Each incident's data key is made once, whoever makes it first (real PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import uuid4

from services.audit.datakeys import DataKeys, load_key_encryption_key
from shared.db import create_engine, create_session_factory
from shared.settings import Settings
from tests.audit.conftest import AuditSystem
from tests.integration.helpers import eventually
from tests.support import execute_sql, fetch_value, statements_sent


async def test_a_key_another_consumer_made_meanwhile_is_the_incident_s_key(
    audit_system: AuditSystem, tmp_path: Path
) -> None:
    """Made in one statement that returns the keys stored and made; one another consumer made
    while that statement ran (committed after its snapshot) is read after it, not replaced."""
    settings = Settings(database_url=audit_system.infra.database_url)
    ours_engine, rival_engine = create_engine(settings), create_engine(settings)
    keys = DataKeys(load_key_encryption_key(Settings(local_data_dir=tmp_path)))
    theirs, ours = f"keys-{uuid4()}", f"keys-{uuid4()}"

    async def ours_waiting() -> int:
        return int(
            await fetch_value(
                settings,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%INSERT INTO audit.data_keys%'",
            )
        )

    try:
        async with create_session_factory(rival_engine)() as rival, rival.begin():
            made_by_them = await keys.for_append(rival, [theirs])
            with statements_sent(ours_engine) as statements:
                async with create_session_factory(ours_engine)() as session, session.begin():
                    ours_made = asyncio.create_task(keys.for_append(session, [theirs, ours]))
                    await eventually(ours_waiting, lambda waiting: waiting == 1)
                    await rival.commit()
                    got = await ours_made
    finally:
        await ours_engine.dispose()
        await rival_engine.dispose()
    their_cipher = made_by_them[theirs]
    assert their_cipher is not None and got[theirs] is not None and got[ours] is not None
    assert got[theirs].open(their_cipher.seal("赵某某", "subject"), "subject") == "赵某某"
    # The statement that made ours, and one look for theirs once they committed.
    assert sum("INSERT INTO audit.data_keys" in statement for statement in statements) == 1
    assert len(statements) == 2


async def test_keys_stored_made_and_erased_come_from_one_statement(
    audit_system: AuditSystem, tmp_path: Path
) -> None:
    """An append's keys: the stored one as it was, a new one made once, an erased one stays
    erased (None)."""
    settings = Settings(database_url=audit_system.infra.database_url)
    engine = create_engine(settings)
    keys = DataKeys(load_key_encryption_key(Settings(local_data_dir=tmp_path)))
    stored, new, erased = (f"keys-{uuid4()}" for _ in range(3))
    sessions = create_session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            before = await keys.for_append(session, [stored, erased])
        await execute_sql(  # as its erasure leaves it: the row kept, the key gone
            settings,
            "UPDATE audit.data_keys SET wrapped = NULL, erased_at = now() WHERE incident = $1",
            erased,
        )
        with statements_sent(engine) as statements:
            async with sessions() as session, session.begin():
                got = await keys.for_append(session, [stored, new, erased, stored])
    finally:
        await engine.dispose()
    assert len(statements) == 1
    assert got.keys() == {stored, new, erased}
    assert got[erased] is None and got[new] is not None
    sealed = before[stored].seal("钱某某", "subject")  # type: ignore[union-attr]
    assert got[stored] is not None and got[stored].open(sealed, "subject") == "钱某某"
