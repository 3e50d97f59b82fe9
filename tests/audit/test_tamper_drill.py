"""Tamper drills: a superuser rewrites the log behind the triggers' back, and is caught."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx

from services.audit.store import CHECKPOINT_LOCK
from tests.audit.conftest import AuditSystem
from tests.audit.helpers import run_module
from tests.audit.test_log import latest
from tests.integration.helpers import eventually, report, timeline_with


@asynccontextmanager
async def superuser(system: AuditSystem) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(system.infra.database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def rewrite(system: AuditSystem, table: str, trigger: str, sql: str, *args) -> None:
    async with superuser(system) as connection, connection.transaction():
        await connection.execute(f"ALTER TABLE audit.{table} DISABLE TRIGGER {trigger}")
        await connection.execute(sql, *args)
        await connection.execute(f"ALTER TABLE audit.{table} ENABLE ALWAYS TRIGGER {trigger}")


async def verifier(*arguments: str) -> tuple[int, str]:
    code, out, err = await run_module("services.audit.verify", *arguments)
    return code, out + err


async def test_a_leaf_edited_behind_the_triggers_is_named_by_its_index(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient], tmp_path: Path
) -> None:
    incident_id = await report(clients)
    timeline = await timeline_with(clients["audit"], incident_id, "incident.reported")
    target = next(  # the report itself
        e["index"] for e in timeline.json()["entries"] if e["ce_type"] == "incident.reported"
    )
    await eventually(lambda: latest(clients, audit_system), lambda c: c.size > target)
    note = (await clients["audit"].get("/v1/log/checkpoint")).text
    (tmp_path / "checkpoint.txt").write_text(note, encoding="utf-8")
    check = [
        "log",
        "--checkpoint",
        str(tmp_path / "checkpoint.txt"),
        "--key",
        audit_system.log_key.vkey,
        "--database-url",
        audit_system.infra.database_url,
    ]
    code, out = await verifier(*check)
    assert code == 0, out
    async with superuser(audit_system) as connection:
        original = await connection.fetchrow(
            "SELECT leaf, leaf_hash FROM audit.log_entries WHERE index = $1", target
        )
    # The township is in clear (people's data is sealed): move the report to another one.
    forged = bytes(original["leaf"]).replace(
        b'"township_code":"150626102"', b'"township_code":"150626100"'
    )
    assert forged != bytes(original["leaf"])
    update = "UPDATE audit.log_entries SET leaf = $1 WHERE index = $2"
    await rewrite(audit_system, "log_entries", "log_entries_no_update", update, forged, target)
    try:
        code, out = await verifier(*check)
        assert code == 1, out
        assert f"first index that no longer matches: {target}" in out
        assert f"leaf {target} no longer matches what was signed" in out

        export = tmp_path / "log.jsonl"
        code, out = await verifier(
            "export", "--database-url", audit_system.infra.database_url, "--out", str(export)
        )
        assert code == 0, out
        code, out = await verifier(*check[:-2], "--export", str(export))
        assert code == 1 and f"first index that no longer matches: {target}" in out

        verdict = (await clients["audit"].get("/v1/log/verify")).json()
        assert verdict["first_broken_index"] == target
        assert verdict["checkpoint_matches"] is False

        # A forger who also rewrites the stored hash is still caught by the signed root.
        rehash = (
            "UPDATE audit.log_entries SET leaf_hash = sha256('\\x00'::bytea || leaf) "
            "WHERE index = $1"
        )
        await rewrite(audit_system, "log_entries", "log_entries_no_update", rehash, target)
        code, out = await verifier(*check)
        assert code == 1 and "stored hashes were rewritten too" in out
    finally:
        restore = "UPDATE audit.log_entries SET leaf = $1, leaf_hash = $2 WHERE index = $3"
        await rewrite(
            audit_system,
            "log_entries",
            "log_entries_no_update",
            restore,
            bytes(original["leaf"]),
            bytes(original["leaf_hash"]),
            target,
        )
    code, out = await verifier(*check)
    assert code == 0, out


async def test_the_log_refuses_to_sign_a_checkpoint_inconsistent_with_the_last(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    """Had the last signed root been another, no later tree extends it: nothing is signed."""
    update = "UPDATE audit.checkpoints SET root_hash = $1 WHERE size = $2"
    forged = bytes(32)
    # Forge the newest checkpoint under the signer's own lock, so none is signed in between.
    async with superuser(audit_system) as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", CHECKPOINT_LOCK)
        size = await connection.fetchval("SELECT max(size) FROM audit.checkpoints")
        await connection.execute(
            "ALTER TABLE audit.checkpoints DISABLE TRIGGER checkpoints_no_update"
        )
        await connection.execute(update, forged, size)
        await connection.execute(
            "ALTER TABLE audit.checkpoints ENABLE ALWAYS TRIGGER checkpoints_no_update"
        )
    signed = await latest(clients, audit_system)
    assert signed.size == size
    try:
        await report(clients, category="OTHER", phase="OCCURRED")
        await asyncio.sleep(2.5)  # several checkpoint intervals while the log grows
        assert (await latest(clients, audit_system)) == signed
    finally:
        await rewrite(
            audit_system,
            "checkpoints",
            "checkpoints_no_update",
            update,
            signed.root_hash,
            signed.size,
        )
    after = await eventually(
        lambda: latest(clients, audit_system), lambda c: c.size > signed.size, timeout=30
    )
    assert after.origin == signed.origin
