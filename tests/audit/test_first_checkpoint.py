"""The first checkpoint over a log that already holds leaves is signed only when an operator
confirms how many leaves they checked; a new log is signed as it grows, with no confirmation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit import store
from services.audit.checkpoints import Checkpointer
from services.audit.leaves import canonical_json, leaf_hash
from services.audit.merkle import root_of
from services.audit.models import checkpoints, messaging
from services.audit.note import Signer
from shared.db import create_engine, create_session_factory, migrate
from tests.audit.conftest import LOG_SEED, ORIGIN, AuditSystem
from tests.support import scratch_database

LEAVES = [canonical_json({"n": n, "事件": "图克镇"}) for n in range(5)]


@asynccontextmanager
async def migrated_log(system: AuditSystem) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with scratch_database(system.infra.database_url) as settings:
        await migrate(settings, "audit")
        engine = create_engine(settings, pool_size=1)
        try:
            yield create_session_factory(engine)
        finally:
            await engine.dispose()


async def append(sessions: async_sessionmaker[AsyncSession], leaves: list[bytes]) -> None:
    async with sessions() as session, session.begin():
        await store.act_as_writer(session)
        await store.append(
            session,
            [
                store.NewLeaf(
                    "intake",
                    uuid.uuid4(),
                    "incident.reported",
                    "s",
                    datetime.now(UTC),
                    "incidents.v1",
                    0,
                    offset,
                    leaf,
                    leaf_hash(leaf),
                )
                for offset, leaf in enumerate(leaves)
            ],
        )


def checkpointer(
    sessions: async_sessionmaker[AsyncSession], confirmed: int | None = None
) -> Checkpointer:
    # The checkpointer takes only the session factory from the service's runtime.
    runtime = SimpleNamespace(sessions=sessions)
    signer = Signer.from_seed(ORIGIN, LOG_SEED)
    return Checkpointer(runtime, signer, messaging.outbox, confirmed_first_size=confirmed)  # type: ignore[arg-type]


async def signed_sizes(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessions() as session:
        return list((await session.scalars(select(checkpoints.c.size))).all())


async def test_an_existing_log_is_signed_only_over_the_leaves_an_operator_confirmed(
    audit_system: AuditSystem,
) -> None:
    async with migrated_log(audit_system) as sessions:
        await append(sessions, LEAVES)
        assert await checkpointer(sessions).checkpoint_once() is None
        assert await checkpointer(sessions, confirmed=len(LEAVES) + 1).checkpoint_once() is None
        assert await signed_sizes(sessions) == []

        confirmed = checkpointer(sessions, confirmed=3)
        first = await confirmed.checkpoint_once()
        assert first is not None
        assert (first.size, first.root_hash) == (3, root_of(leaf_hash(leaf) for leaf in LEAVES[:3]))
        # The leaves after the confirmed ones are signed by the next checkpoint.
        second = await confirmed.checkpoint_once()
        assert second is not None and second.size == len(LEAVES)
        assert await signed_sizes(sessions) == [3, len(LEAVES)]


async def test_a_new_log_needs_no_confirmation(audit_system: AuditSystem) -> None:
    async with migrated_log(audit_system) as sessions:
        fresh = checkpointer(sessions)
        assert await fresh.checkpoint_once() is None  # empty: nothing to sign
        await append(sessions, LEAVES)
        signed = await fresh.checkpoint_once()
        assert signed is not None and signed.size == len(LEAVES)
