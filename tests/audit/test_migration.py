"""Migrations 0002 and 0003 on a log of the hash-chain era: the tree is built over the same
leaves, and the findings follower starts after them."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import asyncpg

from services.audit import store
from services.audit.leaves import canonical_json, leaf_hash
from services.audit.merkle import root_of
from shared.db import create_engine, create_session_factory, migrate
from shared.settings import Settings
from tests.audit.conftest import AuditSystem


async def test_upgrade_builds_the_tree_of_leaves_logged_before(audit_system: AuditSystem) -> None:
    name = f"migration_{uuid.uuid4().hex[:8]}"
    server = audit_system.infra.database_url.rsplit("/", 1)[0]
    admin = await asyncpg.connect(f"{server}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    settings = Settings(database_url=f"{server}/{name}")
    try:
        await migrate(settings, "audit", "0001")
        leaves = [canonical_json({"n": n, "事件": "图克镇"}) for n in range(11)]
        connection = await asyncpg.connect(f"{server}/{name}")
        try:
            chain = bytes(32)
            for index, leaf in enumerate(leaves):
                chain = hashlib.sha256(chain + leaf_hash(leaf)).digest()
                await connection.execute(
                    "INSERT INTO audit.log_entries (index, ce_source, ce_id, ce_type, subject, "
                    'ce_time, topic, "partition", "offset", leaf, leaf_hash, chain_hash) '
                    "VALUES ($1, 'intake', $2, 'incident.reported', 's', $3, 'incidents.v1', 0, "
                    "$1, $4, $5, $6)",
                    index,
                    uuid.uuid4(),
                    datetime.now(UTC),
                    leaf,
                    leaf_hash(leaf),
                    chain,
                )
        finally:
            await connection.close()
        await migrate(settings, "audit")
        engine = create_engine(settings, pool_size=1)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                await store.act_as_writer(session)
                assert await store.log_size(session) == len(leaves)
                assert await store.root_at(session, len(leaves)) == root_of(
                    leaf_hash(leaf) for leaf in leaves
                )
        finally:
            await engine.dispose()
        connection = await asyncpg.connect(f"{server}/{name}")
        try:
            owner = await connection.fetchval(
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'audit' "
                "AND tablename = 'tree_nodes'"
            )
            assert owner == "audit_owner"
            assert not await connection.fetchval("SELECT to_regclass('audit.log_head')")
            # 0003: every leaf logged before was reviewed in the transaction that appended it,
            # so the findings follower starts after them.
            cursor = await connection.fetchval("SELECT position FROM audit.findings_cursor")
            assert cursor == len(leaves)
        finally:
            await connection.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
