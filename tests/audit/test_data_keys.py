"""Each incident's data key is made once, whoever makes it first (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit.datakeys import DataKeys, load_key_encryption_key
from shared.db import create_engine, create_session_factory
from shared.pii import PiiCipher
from shared.settings import Settings
from tests.audit.conftest import AuditSystem
from tests.support import statements_sent


@dataclass(frozen=True)
class LosingTheRace(DataKeys):
    """Another consumer makes `theirs`'s key between this one's look and its insert."""

    theirs: str = ""
    rival: async_sessionmaker[AsyncSession] | None = None
    made_by_them: dict[str, PiiCipher | None] = field(default_factory=dict)

    async def _stored(self, session: AsyncSession, incidents: Iterable[str]) -> dict[str, Any]:
        found = await super()._stored(session, incidents)
        if not self.made_by_them and self.rival is not None:
            async with self.rival() as other, other.begin():
                made = await DataKeys(self.kek).for_append(other, [self.theirs])
            self.made_by_them.update(made)
        return found


async def test_a_key_another_consumer_made_meanwhile_is_the_incident_s_key(
    audit_system: AuditSystem, tmp_path: Path
) -> None:
    """Made in one statement that returns the keys; one made by another consumer between
    the look and the insert is read after it, not replaced."""
    settings = Settings(database_url=audit_system.infra.database_url)
    ours_engine, rival_engine = create_engine(settings), create_engine(settings)
    theirs, ours = f"keys-{uuid4()}", f"keys-{uuid4()}"
    keys = LosingTheRace(
        load_key_encryption_key(Settings(local_data_dir=tmp_path)),
        theirs=theirs,
        rival=create_session_factory(rival_engine),
    )
    try:
        with statements_sent(ours_engine) as statements:
            async with create_session_factory(ours_engine)() as session, session.begin():
                got = await keys.for_append(session, [theirs, ours])
    finally:
        await ours_engine.dispose()
        await rival_engine.dispose()
    their_cipher = keys.made_by_them[theirs]
    assert their_cipher is not None and got[theirs] is not None and got[ours] is not None
    assert got[theirs].open(their_cipher.seal("赵某某", "subject"), "subject") == "赵某某"
    # The look, the insert that returned ours, and one more look for theirs.
    assert sum("INSERT INTO audit.data_keys" in statement for statement in statements) == 1
    assert sum("SELECT incident, wrapped" in statement for statement in statements) == 2
