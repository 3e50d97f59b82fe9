"""Erasure after the retention period: an incident's personal data is sealed in its leaves under
its own data key; once the key is erased, the routes show those fields as erased, and every
hash, proof and checkpoint, and the offline verifier, still hold."""

from __future__ import annotations

import base64
from pathlib import Path

import asyncpg
import httpx

from services.audit.merkle import verify_inclusion
from services.audit.note import open_checkpoint
from services.audit.personal import ERASED
from tests.audit.conftest import AuditSystem
from tests.audit.helpers import CLEAR_READER, erase_closed_until_now, run_module
from tests.integration.helpers import act, eventually, report

# The reporter and the actor; the reporter's phone reaches the log masked (139****0000) only.
PEOPLE = ("李明", "周强")


def entries(response: httpx.Response, ce_type: str) -> list[dict]:
    return [entry for entry in response.json()["entries"] if entry["ce_type"] == ce_type]


async def test_erasing_an_incidents_key_erases_its_personal_data_and_breaks_no_proof(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient], tmp_path: Path
) -> None:
    audit = clients["audit"]
    incident_id = await report(clients)
    await act(clients, incident_id, "FIRST_RESPONSE_STARTED", actor_name="周强")
    await act(clients, incident_id, "CLOSED", party="BLO", actor_name="周强")
    # Closed as the log knows it (RESPONDING comes first): erasure counts from the closure.
    closed = await eventually(
        lambda: audit.get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: (
            response.status_code == 200
            and len(entries(response, "incident.action_recorded")) >= 2
            and any(
                entry["event"]["data"].get("status") == "CLOSED"
                for entry in entries(response, "incident.status_changed")
            )
        ),
    )
    reported = entries(closed, "incident.reported")[0]

    # The leaf holds the personal data sealed; a reader with pii:read sees it opened.
    database = await asyncpg.connect(audit_system.infra.database_url)
    try:
        leaf = bytes(
            await database.fetchval(
                "SELECT leaf FROM audit.log_entries WHERE index = $1", reported["index"]
            )
        )
        assert [clear for clear in PEOPLE if clear.encode() in leaf] == []
        shown = await audit.get(f"/v1/incidents/{incident_id}/timeline", headers=CLEAR_READER)
        assert [clear for clear in PEOPLE if clear in shown.text] == list(PEOPLE)

        # A checkpoint covering the incident, signed before the erasure.
        note = await eventually(
            lambda: audit.get("/v1/log/checkpoint"),
            lambda response: (
                open_checkpoint(response.text, audit_system.log_key)[0].size
                > max(entry["index"] for entry in closed.json()["entries"])
            ),
        )
        checkpoint, _ = open_checkpoint(note.text, audit_system.log_key)
        (tmp_path / "checkpoint.txt").write_text(note.text, encoding="utf-8")

        # The retention period has passed for every incident closed before now (0 years).
        assert incident_id in await erase_closed_until_now(audit_system.infra.database_url)

        # The erasure is itself on the incident's log, naming no one; the leaves read erased.
        after = await eventually(
            lambda: audit.get(f"/v1/incidents/{incident_id}/timeline", headers=CLEAR_READER),
            lambda response: bool(entries(response, "audit.personal_data_erased")),
        )
        (erasure,) = entries(after, "audit.personal_data_erased")
        assert erasure["event"]["data"]["retention_years"] == 0
        assert erasure["personal_data_erased"] is False  # it holds no personal data
        assert [clear for clear in PEOPLE if clear in after.text] == []
        reported_now = entries(after, "incident.reported")[0]
        assert reported_now["personal_data_erased"] is True
        assert reported_now["event"]["data"]["reporter"] == {
            "party": "SFS:150626102",
            "name": ERASED,
            "phone": ERASED,
        }
        assert reported_now["event"]["data"]["facts"]["category"] == "VIOLENCE"
        actions = entries(after, "incident.action_recorded")
        assert {entry["event"]["data"]["actor_name"] for entry in actions} == {ERASED}
        masked = await audit.get(f"/v1/incidents/{incident_id}/timeline")
        assert entries(masked, "incident.reported")[0]["event"]["data"]["reporter"]["name"] == (
            ERASED
        )
        assert await database.fetchval(
            "SELECT erased_at IS NOT NULL AND wrapped IS NULL FROM audit.data_keys "
            "WHERE incident = $1",
            incident_id,
        )
        # The leaf did not change: its hash, its proof against the earlier checkpoint hold.
        assert (
            bytes(
                await database.fetchval(
                    "SELECT leaf FROM audit.log_entries WHERE index = $1", reported["index"]
                )
            )
            == leaf
        )
    finally:
        await database.close()
    assert reported_now["leaf_hash"] == reported["leaf_hash"]
    proof = (
        await audit.get(
            "/v1/log/proof/inclusion", params={"index": reported["index"], "size": checkpoint.size}
        )
    ).json()
    verify_inclusion(
        reported["index"],
        checkpoint.size,
        bytes.fromhex(reported["leaf_hash"]),
        [base64.b64decode(step) for step in proof["proof"]],
        checkpoint.root_hash,
    )
    verified = (await audit.get("/v1/log/verify")).json()
    assert verified["checkpoint_matches"] is True and verified["first_broken_index"] is None
    code, out, err = await run_module(
        "services.audit.verify",
        "log",
        "--checkpoint",
        str(tmp_path / "checkpoint.txt"),
        "--key",
        audit_system.log_key.vkey,
        "--database-url",
        audit_system.infra.database_url,
    )
    assert code == 0 and f"all {checkpoint.size} leaves match the checkpoint" in out, out + err

    # The investigation report is still drawn, the personal data in it erased.
    text = (
        await audit.get(f"/v1/incidents/{incident_id}/investigation-report", headers=CLEAR_READER)
    ).text
    assert ERASED in text and [clear for clear in PEOPLE if clear in text] == []
