"""The Merkle log on the real stack: checkpoints, proofs over REST, the witness, the roles."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from services.audit import store
from services.audit.leaves import canonical_json, leaf_hash
from services.audit.merkle import root_of, verify_consistency, verify_inclusion
from services.audit.models import WRITER_ROLE
from services.audit.note import Checkpoint, Note, open_checkpoint, verify_cosignature
from shared.db import create_engine, create_session_factory
from shared.settings import Settings
from tests.audit.conftest import AuditSystem
from tests.audit.helpers import CLEAR_READER, exported, run_module
from tests.integration.helpers import eventually, report
from tests.support import statements_sent


def b64(value: str) -> bytes:
    return base64.b64decode(value)


async def latest(clients: dict[str, httpx.AsyncClient], system: AuditSystem) -> Checkpoint:
    response = await eventually(
        lambda: clients["audit"].get("/v1/log/checkpoint"), lambda r: r.status_code == 200
    )
    checkpoint, _ = open_checkpoint(response.text, system.log_key)
    return checkpoint


async def signed_history(clients: dict[str, httpx.AsyncClient], system: AuditSystem):
    lines = await exported(clients["audit"], CLEAR_READER)
    checkpoints = [
        open_checkpoint(i["checkpoint"], system.log_key)[0] for i in lines if "checkpoint" in i
    ]
    leaves = {i["index"]: json.loads(b64(i["leaf"])) for i in lines if "index" in i}
    return checkpoints, leaves


async def test_checkpoints_are_signed_and_never_only_for_checkpoints(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    await report(clients, category="OTHER", phase="OCCURRED")
    first = await latest(clients, audit_system)
    assert first.origin == "sqjz.wushen.example/audit-test"
    await eventually(
        lambda: latest(clients, audit_system), lambda checkpoint: checkpoint.size > first.size
    )
    checkpoints, leaves = await signed_history(clients, audit_system)
    assert len(checkpoints) >= 2
    sizes = [c.size for c in checkpoints]
    assert sizes == sorted(set(sizes))
    for earlier, later in itertools.pairwise(checkpoints):
        added = [leaves[i]["type"] for i in range(earlier.size, later.size)]
        assert any(kind != "audit.checkpoint" for kind in added), (earlier.size, added)
    # Every checkpoint is published on audit.v1 and comes back as a leaf carrying its note.
    logged = [leaf["data"] for leaf in leaves.values() if leaf["type"] == "audit.checkpoint"]
    assert {item["size"] for item in logged} <= set(sizes)
    assert all(open_checkpoint(item["note"], audit_system.log_key) for item in logged)


async def test_inclusion_and_consistency_proofs_over_rest(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    incident_id = await report(clients)
    checkpoint = await eventually(
        lambda: latest(clients, audit_system), lambda checkpoint: checkpoint.size > 3
    )
    for index in (0, checkpoint.size // 2, checkpoint.size - 1):
        body = (
            await clients["audit"].get(
                "/v1/log/proof/inclusion", params={"index": index, "size": checkpoint.size}
            )
        ).json()
        assert b64(body["root_hash"]) == checkpoint.root_hash
        verify_inclusion(
            index,
            checkpoint.size,
            b64(body["leaf_hash"]),
            [b64(step) for step in body["proof"]],
            checkpoint.root_hash,
        )
    history, _ = await signed_history(clients, audit_system)
    older = history[0]
    body = (
        await clients["audit"].get(
            "/v1/log/proof/consistency", params={"from": older.size, "to": checkpoint.size}
        )
    ).json()
    verify_consistency(
        older.size,
        checkpoint.size,
        [b64(step) for step in body["proof"]],
        older.root_hash,
        checkpoint.root_hash,
    )
    too_big = await clients["audit"].get(
        "/v1/log/proof/inclusion", params={"index": 0, "size": 10**9}
    )
    assert too_big.status_code == 422
    assert too_big.headers["content-type"] == "application/problem+json"

    proofs = await eventually(
        lambda: clients["audit"].get(f"/v1/incidents/{incident_id}/proofs"),
        lambda r: r.status_code == 200 and all(e["covered"] for e in r.json()["entries"]),
    )
    body = proofs.json()
    anchor, _ = open_checkpoint(body["checkpoint"]["note"], audit_system.log_key)
    assert body["entries"][0]["ce_type"] == "incident.reported"
    for entry in body["entries"]:
        verify_inclusion(
            entry["index"],
            anchor.size,
            b64(entry["leaf_hash"]),
            [b64(step) for step in entry["proof"]],
            anchor.root_hash,
        )
    head = (await clients["audit"].get("/v1/log/head")).json()
    assert head["size"] >= anchor.size and bytes.fromhex(head["head_hash"]) == b64(
        head["root_hash"]
    )


async def run_witness(*arguments: str) -> tuple[int, str, str]:
    return await run_module("services.audit.witness", *arguments)


async def test_witness_checks_consistency_cosigns_and_the_log_serves_the_cosignature(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient], tmp_path: Path
) -> None:
    (tmp_path / "witness.key").write_text(audit_system.witness.skey + "\n", encoding="utf-8")
    arguments = [
        "cosign",
        "--state",
        str(tmp_path),
        "--log",
        audit_system.processes.url("audit"),
        "--log-key",
        audit_system.log_key.vkey,
        "--submit",
    ]
    signed = await latest(clients, audit_system)  # the one the operator checked
    code, out, err = await run_witness(*arguments, "--first-size", str(signed.size))
    assert code == 0, err
    first, _ = open_checkpoint(out, audit_system.log_key)
    assert first.size == signed.size
    await report(clients, category="OTHER", phase="OCCURRED")
    await eventually(
        lambda: latest(clients, audit_system), lambda checkpoint: checkpoint.size > first.size
    )
    code, out, err = await run_witness(*arguments)  # checks consistency from `first` first
    assert code == 0, err
    second, _ = open_checkpoint(out, audit_system.log_key)
    assert second.size > first.size
    served = await clients["audit"].get("/v1/log/checkpoint", params={"size": second.size})
    note = Note.parse(served.text)
    assert verify_cosignature(note, audit_system.witness.verifier) > 0
    open_checkpoint(note, audit_system.log_key)


async def test_the_service_role_cannot_change_the_log_even_with_triggers_disabled(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    await latest(clients, audit_system)
    connection = await asyncpg.connect(audit_system.infra.database_url)
    try:
        transaction = connection.transaction()
        await transaction.start()
        # The findings cursor first: the live follower holds it through a pass, and a pass that
        # stores findings would wait for the trigger changes below while this transaction
        # waited for its cursor further down (a deadlock, one side of it aborted).
        await connection.execute("SELECT FROM audit.findings_cursor WHERE id = 1 FOR UPDATE")
        for table in ("log_entries", "tree_nodes", "checkpoints", "findings"):
            await connection.execute(f"ALTER TABLE audit.{table} DISABLE TRIGGER USER")
        await connection.execute("SET LOCAL ROLE audit_writer")
        for statement in (
            "UPDATE audit.log_entries SET ce_type = 'forged' WHERE index = 0",
            "DELETE FROM audit.log_entries WHERE index = 0",
            "TRUNCATE audit.log_entries",
            "UPDATE audit.tree_nodes SET hash = hash WHERE level = 1",
            "DELETE FROM audit.checkpoints",
            "DELETE FROM audit.findings",
            "ALTER TABLE audit.log_entries DISABLE TRIGGER USER",
            "SET session_replication_role = replica",
            # The findings cursor: its one row may move, and that is all.
            "INSERT INTO audit.findings_cursor (id, position) VALUES (2, 0)",
            "DELETE FROM audit.findings_cursor",
            "TRUNCATE audit.findings_cursor",
            "UPDATE audit.findings_cursor SET id = 2",
            # Data keys: made, marked closed and erased, never deleted nor moved to another
            # incident.
            "DELETE FROM audit.data_keys",
            "TRUNCATE audit.data_keys",
            "UPDATE audit.data_keys SET incident = 'another'",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with connection.transaction():  # a savepoint per attempt
                    await connection.execute(statement)
        moved = await connection.execute(
            "UPDATE audit.findings_cursor SET position = position, updated_at = now()"
        )
        assert moved == "UPDATE 1"
        assert await connection.fetchval("SELECT count(*) FROM audit.log_entries") > 0
        await transaction.rollback()
    finally:
        await connection.close()


def made_leaf(ce_type: str, subject: str) -> store.NewLeaf:
    leaf = canonical_json({"type": ce_type, "id": str(uuid4())})
    return store.NewLeaf(
        ce_source="test",
        ce_id=uuid4(),
        ce_type=ce_type,
        subject=subject,
        ce_time=datetime.now(UTC),
        topic="incidents.v1",
        partition=0,
        offset=0,
        leaf=leaf,
        leaf_hash=leaf_hash(leaf),
    )


async def test_the_same_event_never_becomes_two_leaves(audit_system: AuditSystem) -> None:
    event = made_leaf("test.duplicate", "duplicates")
    engine = create_engine(Settings(database_url=audit_system.infra.database_url), pool_size=1)
    sessions = create_session_factory(engine)
    try:
        appended = []
        for batch in ([event, event], [event]):
            async with sessions() as session, session.begin():
                await store.act_as_writer(session)
                appended.append(await store.append(session, batch))
    finally:
        await engine.dispose()
    assert len(appended[0]) == 1 and appended[1] == []


async def test_a_consumed_batch_opens_its_append_in_one_statement(
    audit_system: AuditSystem,
) -> None:
    """The writer's role, the append lock and the NOTIFY of the leaves come in one round trip
    (`store.open_append`); the append asks for no lock again; the NOTIFY is heard."""
    new_leaf = made_leaf("test.open-append", "open-append")
    heard: list[str] = []
    listener = await asyncpg.connect(audit_system.infra.database_url)
    await listener.add_listener(store.APPENDED_CHANNEL, lambda *args: heard.append(args[2]))
    engine = create_engine(Settings(database_url=audit_system.infra.database_url), pool_size=1)
    sessions = create_session_factory(engine)
    try:
        with statements_sent(engine) as statements:
            async with sessions() as session, session.begin():
                await store.open_append(session)
                role = await session.scalar(text("SELECT current_user"))
                locks = await listener.fetch(
                    "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND classid = 0 AND objid = $1",
                    store.APPEND_LOCK,
                )
                appended = await store.append(session, [new_leaf])
        await eventually(lambda: asyncio.sleep(0.05, heard), bool)
    finally:
        await engine.dispose()
        await listener.close()
    assert role == WRITER_ROLE
    assert len(locks) == 1
    assert len(appended) == 1
    assert sum("pg_advisory_xact_lock" in statement for statement in statements) == 1
    assert not any("SET LOCAL ROLE" in statement for statement in statements)


async def test_an_append_reads_what_is_logged_and_the_trees_border_in_one_statement(
    audit_system: AuditSystem,
) -> None:
    """Batches of 1 to 9 leaves, each appended from the border of the tree the one before
    left (sizes across several powers of two): one read of the log each, and the nodes they
    store give the root the leaves themselves give."""
    engine = create_engine(Settings(database_url=audit_system.infra.database_url), pool_size=1)
    sessions = create_session_factory(engine)
    try:
        for count in range(1, 10):
            leaves = [made_leaf("test.border", f"border-{count}-{n}") for n in range(count)]
            with statements_sent(engine) as statements:
                async with sessions() as session, session.begin():
                    await store.open_append(session)
                    appended = await store.append(session, leaves)
            assert len(appended) == count
            reads = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
            assert len(reads) == 2, reads  # the opening of the append, and the one read
            size = appended[-1] + 1
            async with sessions() as session:
                stored_root = await store.root_at(session, size)
                hashes = (
                    await session.execute(
                        text(
                            "SELECT leaf_hash FROM audit.log_entries WHERE index < :size"
                            " ORDER BY index"
                        ),
                        {"size": size},
                    )
                ).scalars()
                assert stored_root == root_of(bytes(digest) for digest in hashes)
    finally:
        await engine.dispose()


async def test_offline_verifier_checks_an_event_and_two_checkpoints_from_an_export(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient], tmp_path: Path
) -> None:
    old = await latest(clients, audit_system)
    (tmp_path / "old.txt").write_text(
        (await clients["audit"].get("/v1/log/checkpoint", params={"size": old.size})).text,
        encoding="utf-8",
    )
    incident_id = await report(clients)
    timeline = await eventually(
        lambda: clients["audit"].get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: response.status_code == 200,
    )
    event_id = timeline.json()["entries"][0]["ce_id"]
    new = await eventually(
        lambda: latest(clients, audit_system),
        lambda c: c.size > timeline.json()["entries"][0]["index"],
    )
    (tmp_path / "new.txt").write_text(
        (await clients["audit"].get("/v1/log/checkpoint", params={"size": new.size})).text,
        encoding="utf-8",
    )
    export = tmp_path / "log.jsonl"
    lines = await exported(clients["audit"], CLEAR_READER, limit=7)  # pages of 7 leaves
    export.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    key = ["--key", audit_system.log_key.vkey, "--export", str(export)]
    code, out, err = await run_module(
        "services.audit.verify",
        "inclusion",
        "--checkpoint",
        str(tmp_path / "new.txt"),
        "--event-id",
        event_id,
        *key,
    )
    assert code == 0 and "incident.reported" in out, out + err
    code, out, err = await run_module(
        "services.audit.verify",
        "consistency",
        "--old",
        str(tmp_path / "old.txt"),
        "--new",
        str(tmp_path / "new.txt"),
        *key,
    )
    assert code == 0 and f"size {new.size} extends the one of size {old.size}" in out, out + err
    code, out, err = await run_module(
        "services.audit.verify", "log", "--checkpoint", str(tmp_path / "new.txt"), *key
    )
    assert code == 0 and f"all {new.size} leaves match the checkpoint" in out, out + err

    # Without pii:read too: the leaves hold people's data sealed, so every leaf comes whole
    # and none holds it in clear.
    masked = await exported(clients["audit"])
    leaves = [b64(line["leaf"]) for line in masked if "index" in line]
    assert len(leaves) == len([line for line in masked if "index" in line])
    assert [leaf for leaf in leaves if "李明".encode() in leaf or b"13900000000" in leaf] == []
    export.write_text("".join(json.dumps(line) + "\n" for line in masked), encoding="utf-8")
    code, out, err = await run_module(
        "services.audit.verify", "log", "--checkpoint", str(tmp_path / "new.txt"), *key
    )
    assert code == 0 and f"all {new.size} leaves match the checkpoint" in out, out + err


async def test_verification_goes_page_by_page_and_judges_the_whole_log_on_the_last(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    audit = clients["audit"]
    await report(clients)
    await latest(clients, audit_system)
    pages, after = [], None
    while True:
        params = {"limit": 5} | ({"after": after} if after else {})
        page = (await audit.get("/v1/log/verify", params=params)).json()
        pages.append(page)
        after = page["next"]
        if after is None:
            break
    last = pages[-1]
    assert len(pages) > 2 and [page["checked"] for page in pages[:2]] == [5, 10]
    assert last["checkpoint_matches"] is True and last["first_broken_index"] is None
    assert {page["checkpoint_size"] for page in pages} == {pages[0]["checkpoint_size"]}
    assert last["checked"] >= last["checkpoint_size"]
    # The pages re-derived the very tree the log stores at that size.
    checked = last["checked"]
    stored = await audit.get("/v1/log/proof/consistency", params={"from": checked, "to": checked})
    assert last["recomputed_root_hash"] == stored.json()["new_root_hash"]
    refused = await audit.get("/v1/log/verify", params={"after": "bm90IGEgcG9zaXRpb24="})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "after"
    too_many = await audit.get("/v1/log/export", params={"limit": 10_001})
    assert too_many.status_code == 422


async def test_an_incidents_timeline_and_proofs_come_in_pages(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    audit = clients["audit"]
    incident_id = await report(clients)
    whole = await eventually(
        lambda: audit.get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: response.status_code == 200 and len(response.json()["entries"]) >= 5,
    )
    await latest(clients, audit_system)
    for route in ("timeline", "proofs"):
        paged, after = [], None
        while True:
            params = {"limit": 2} | ({"after": after} if after else {})
            page = (await audit.get(f"/v1/incidents/{incident_id}/{route}", params=params)).json()
            assert len(page["entries"]) <= 2
            paged += page["entries"]
            after = page["next"]
            if after is None:
                break
        indices = [entry["index"] for entry in paged]
        assert len(indices) == len(set(indices)) >= 5
        # Every entry once, in the order they happened; later events may have joined since.
        assert {entry["index"] for entry in whole.json()["entries"]} <= set(indices)
        order = [(datetime.fromisoformat(e["ce_time"]), e["index"]) for e in paged]
        assert order == sorted(order)
    other_township = {"X-Act-As": "SFS:150626100"}
    refused = await audit.get(
        f"/v1/incidents/{incident_id}/timeline", params={"limit": 1}, headers=other_township
    )
    assert refused.status_code == 403
    bad = await audit.get(f"/v1/incidents/{incident_id}/timeline", params={"after": "x"})
    assert bad.status_code == 422


async def test_personal_data_needs_a_token_and_permission_hashes_are_public(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    incident_id = await report(clients)
    await eventually(
        lambda: clients["audit"].get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: response.status_code == 200,
    )
    audit = clients["audit"]
    as_other_township = {"X-Act-As": "SFS:150626100"}
    timeline = f"/v1/incidents/{incident_id}/timeline"
    assert (await audit.get(timeline, headers=as_other_township)).status_code == 403
    assert (await audit.get(timeline, headers={"X-Act-As": "SFS:150626102"})).status_code == 200
    police = {"X-Act-As": "PPS:150626102"}
    assert (await audit.get("/v1/findings", headers=police)).status_code == 403
    report_path = f"/v1/incidents/{incident_id}/investigation-report"
    assert (await audit.get(report_path, headers={"X-Act-As": "CEO"})).status_code == 200
    async with httpx.AsyncClient(base_url=audit_system.processes.url("audit")) as anonymous:
        assert (await anonymous.get(timeline)).status_code == 401
        assert (await anonymous.get("/v1/log/export")).status_code == 401
        await latest(clients, audit_system)
        assert (await anonymous.get("/v1/log/checkpoint")).status_code == 200
        assert (await anonymous.get("/v1/log/key")).text.strip() == audit_system.log_key.vkey


async def test_batches_are_applied_whole_not_retried_one_by_one(audit_system: AuditSystem) -> None:
    """The one-by-one path is for batches that fail; none of the tests' should have."""
    log = (audit_system.processes.log_dir / "audit.log").read_text(encoding="utf-8")
    assert "batch of" not in log, [line for line in log.splitlines() if "batch of" in line][:3]
