"""Migrations on a log written before them: 0002 and 0003 on a log of the hash-chain era (the
tree is built over the same leaves, and the findings follower starts after them); 0005 files
the links logged before under the other incident they name."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import asyncpg

from services.audit import store
from services.audit.leaves import canonical_json, leaf_hash
from services.audit.merkle import root_of
from shared.db import create_engine, create_session_factory, migrate
from tests.audit.conftest import AuditSystem
from tests.support import scratch_database


async def test_upgrade_builds_the_tree_of_leaves_logged_before(audit_system: AuditSystem) -> None:
    async with scratch_database(audit_system.infra.database_url) as settings:
        url = settings.plain_database_url
        await migrate(settings, "audit", "0001")
        leaves = [canonical_json({"n": n, "事件": "图克镇"}) for n in range(11)]
        connection = await asyncpg.connect(url)
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
        connection = await asyncpg.connect(url)
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


async def test_upgrade_files_links_logged_before_under_the_other_incident_they_name(
    audit_system: AuditSystem,
) -> None:
    """0005: a merge or link logged before the table existed is filed under the incident it
    names besides its own (R20); a report, and a link naming no other incident, are not."""
    kept, merged = str(uuid.uuid4()), str(uuid.uuid4())
    async with scratch_database(audit_system.infra.database_url) as settings:
        url = settings.plain_database_url
        await migrate(settings, "audit", "0004")
        leaves = [
            ("incident.reported", {"incident_id": kept}),
            ("incident.merged", {"incident_id": kept, "merged_incident_id": merged}),
            ("incident.linked", {"incident_id": kept, "report": {"reporter": {}}}),
            ("incident.unlinked", {"incident_id": kept, "linked_incident_id": merged}),
        ]
        connection = await asyncpg.connect(url)
        try:
            for index, (ce_type, data) in enumerate(leaves):
                leaf = canonical_json({"type": ce_type, "subject": kept, "data": data})
                await connection.execute(
                    "INSERT INTO audit.log_entries (index, ce_source, ce_id, ce_type, subject, "
                    'ce_time, topic, "partition", "offset", leaf, leaf_hash) '
                    "VALUES ($1, 'intake', $2, $3, $4, $5, 'incidents.v1', 0, $1, $6, $7)",
                    index,
                    uuid.uuid4(),
                    ce_type,
                    kept,
                    datetime.now(UTC),
                    leaf,
                    leaf_hash(leaf),
                )
        finally:
            await connection.close()
        await migrate(settings, "audit")
        connection = await asyncpg.connect(url)
        try:
            filed = await connection.fetch(
                "SELECT incident_id, index FROM audit.incident_leaves ORDER BY index"
            )
            assert [(row["incident_id"], row["index"]) for row in filed] == [
                (merged, 1),
                (merged, 3),
            ]
            owner = await connection.fetchval(
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'audit' "
                "AND tablename = 'incident_leaves'"
            )
            assert owner == "audit_owner"
        finally:
            await connection.close()
