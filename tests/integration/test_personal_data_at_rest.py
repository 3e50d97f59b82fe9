"""Personal data at rest: what people write (a 续报's text, an action's note), who acted, and
the reporter's phone are sealed in intake's tables, masked to a reader without pii:read, and
shown to one with it; a migration seals rows written before, and a key rotation re-seals them.
Escalation keeps of a reporter only the party."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr

from services.intake.reseal import reseal
from shared.db import migrate
from shared.pii import PiiCipher, new_key
from shared.settings import Settings
from tests.integration.helpers import act, eventually, report
from tests.support import fetch_value, scratch_database
from tools.devrun import development_secrets

PII_READER = {"X-Act-As": "BLO incidents:read pii:read"}
PHONE = "13912345678"
NOTE = "已联系王某某家属，电话13987654321"
TEXT = "续报：王某某已被控制，身份证150626199001011234"
ACTOR = "赵志刚"


async def stored_rows(url: str, incident: str) -> str:
    """Every intake row of the incident as the database holds it, as one text."""
    incident_id = uuid.UUID(incident)
    connection = await asyncpg.connect(url)
    try:
        rows = [
            *await connection.fetch("SELECT * FROM intake.incidents WHERE id = $1", incident_id),
            *await connection.fetch(
                "SELECT * FROM intake.reports WHERE incident_id = $1", incident_id
            ),
            *await connection.fetch(
                "SELECT * FROM intake.actions WHERE incident_id = $1", incident_id
            ),
        ]
    finally:
        await connection.close()
    return json.dumps([dict(row) for row in rows], default=str, ensure_ascii=False)


async def published_events(url: str, incident: str) -> str:
    """The events intake staged for the incident (its outbox), as one text."""
    connection = await asyncpg.connect(url)
    try:
        payloads = await connection.fetch(
            "SELECT payload FROM intake.outbox WHERE key = $1", incident
        )
    finally:
        await connection.close()
    return "".join(bytes(row["payload"]).decode() for row in payloads)


async def test_texts_notes_actors_and_phones_are_sealed_at_rest_and_shown_only_with_pii_read(
    clients: dict[str, httpx.AsyncClient], infra_settings: Settings
) -> None:
    incident_id = await report(
        clients, reporter={"party": "SFS:150626102", "name": "李明", "phone": PHONE}
    )
    filed = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "FOLLOW_UP",
            "reporter": {"party": "SFS:150626102", "name": "李明", "phone": PHONE},
            "changes": {},
            "text": TEXT,
        },
    )
    assert filed.status_code == 201, filed.text
    await act(clients, incident_id, "ON_SCENE", actor_name=ACTOR, note=NOTE)

    stored = await stored_rows(infra_settings.plain_database_url, incident_id)
    for clear in (PHONE, "13987654321", "王某某", "150626199001011234", ACTOR, "续报"):
        assert clear not in stored, clear
    assert stored.count("sealed") >= 6  # facts, reporters, text, note, actor's name

    # What intake published: the reporter's phone masked, no subject's name or number.
    published = await published_events(infra_settings.plain_database_url, incident_id)
    assert "139****5678" in published
    for clear in (PHONE, "13987654321", "王某某", "150626199001011234"):
        assert clear not in published, clear

    masked = (await clients["intake"].get(f"/v1/incidents/{incident_id}")).json()
    assert masked["personal_data"] == "masked"
    assert masked["reporter"]["phone"] == "139****5678"
    (follow_up,) = (r for r in masked["reports"] if r["kind"] == "FOLLOW_UP")
    assert follow_up["reporter"]["phone"] == "139****5678"
    assert "王某某" not in follow_up["text"] and "150626199001011234" not in follow_up["text"]
    assert follow_up["text"].startswith("续报：王**")
    (arrived,) = (a for a in masked["actions"] if a["action"] == "ON_SCENE")
    assert arrived["actor_name"] == "赵**"
    assert "13987654321" not in arrived["note"] and "王某某" not in arrived["note"]

    shown = (await clients["intake"].get(f"/v1/incidents/{incident_id}", headers=PII_READER)).json()
    assert shown["personal_data"] == "shown"
    assert shown["reporter"]["phone"] == PHONE
    (follow_up,) = (r for r in shown["reports"] if r["kind"] == "FOLLOW_UP")
    assert follow_up["text"] == TEXT and follow_up["reporter"]["phone"] == PHONE
    (arrived,) = (a for a in shown["actions"] if a["action"] == "ON_SCENE")
    assert (arrived["actor_name"], arrived["note"]) == (ACTOR, NOTE)


async def test_who_linked_or_unlinked_incidents_is_sealed_and_masked_without_pii_read(
    clients: dict[str, httpx.AsyncClient], infra_settings: Settings
) -> None:
    first, second = await report(clients), await report(clients)
    for action in ("LINK", "UNLINK"):
        decided = await clients["intake"].post(
            f"/v1/incidents/{first}/links",
            json={
                "action": action,
                "incident_id": second,
                "party": "BLO",
                "actor_name": ACTOR,
                "reason": "经核实",
            },
        )
        assert decided.status_code in (200, 201), decided.text
        assert decided.json()["actor_name"] == ACTOR  # the decider's own answer
    connection = await asyncpg.connect(infra_settings.plain_database_url)
    try:
        stored = await connection.fetchrow(
            "SELECT actor_name::text, unlinked_actor_name::text FROM intake.incident_links "
            "WHERE incident_id = $1",
            uuid.UUID(first),
        )
    finally:
        await connection.close()
    assert ACTOR not in str(dict(stored)) and '"sealed"' in stored["unlinked_actor_name"]
    (masked,) = (await clients["intake"].get(f"/v1/incidents/{first}")).json()["links"]
    assert masked["actor_name"] == "赵**"
    shown = await clients["intake"].get(f"/v1/incidents/{first}", headers=PII_READER)
    assert shown.json()["links"][0]["actor_name"] == ACTOR


async def test_escalation_keeps_of_a_reporter_only_the_party(
    clients: dict[str, httpx.AsyncClient], infra_settings: Settings
) -> None:
    incident_id = await report(
        clients, reporter={"party": "SFS:150626102", "name": "李明", "phone": PHONE}
    )
    await eventually(
        lambda: clients["escalation"].get(f"/v1/incidents/{incident_id}/obligations"),
        lambda response: response.status_code == 200,
    )
    reporter = await fetch_value(
        infra_settings,
        "SELECT reporter FROM escalation.incidents WHERE id = $1",
        uuid.UUID(incident_id),
    )
    assert json.loads(reporter) == {"party": "SFS:150626102"}


def with_keys(keys: dict[str, str]) -> dict[str, Any]:
    """Settings of intake's personal-data keys, the first of them current."""
    return {
        "pii_keys": {key_id: SecretStr(key) for key_id, key in keys.items()},
        "pii_current_key_id": sorted(keys)[0],
    }


async def write_clear_rows(url: str) -> dict[str, Any]:
    """An incident, a follow-up and an action as intake wrote them before 0007: in clear."""
    ids = {
        "incident": uuid.uuid4(),
        "other": uuid.uuid4(),
        "report": uuid.uuid4(),
        "action": uuid.uuid4(),
        "link": uuid.uuid4(),
    }
    reporter = json.dumps({"party": "SFS:150626102", "name": "李明", "phone": PHONE})
    now = datetime.now(UTC)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "INSERT INTO intake.incidents (id, category, phase, township_code, facts, reporter, "
            "status, reported_at) VALUES ($1, 'VIOLENCE', 'IN_PROGRESS', '150626102', '{}', $2, "
            "'REPORTED', $3)",
            ids["incident"],
            reporter,
            now,
        )
        await connection.execute(
            "INSERT INTO intake.reports (id, incident_id, kind, changes, previous, reporter, "
            "text, filed_at) VALUES ($1, $2, 'FOLLOW_UP', '{}', '{}', $3, $4, $5)",
            ids["report"],
            ids["incident"],
            reporter,
            TEXT,
            now,
        )
        for incident in ("incident", "other"):
            await connection.execute(
                "INSERT INTO intake.incidents (id, category, phase, township_code, facts, "
                "reporter, status, reported_at) VALUES ($1, 'VIOLENCE', 'IN_PROGRESS', "
                '\'150626102\', \'{}\', \'{"party": "BLO", "name": "值班员"}\', '
                "'REPORTED', $2) ON CONFLICT DO NOTHING",
                ids[incident],
                now,
            )
        await connection.execute(
            "INSERT INTO intake.incident_links (id, incident_id, linked_incident_id, kind, "
            "party, actor_name, reason, changes, previous, linked_at, unlinked_at, "
            "unlinked_by, unlinked_actor_name, unlink_reason) VALUES ($1, $2, $3, 'LINK', "
            "'BLO', $4, '经核实', '{}', '{}', $5, $5, 'BLO', $4, '并非同一事件')",
            ids["link"],
            ids["incident"],
            ids["other"],
            ACTOR,
            now,
        )
        await connection.execute(
            "INSERT INTO intake.actions (id, incident_id, action, party, actor_name, "
            "occurred_at, recorded_at, note) VALUES ($1, $2, 'ARRIVED', 'SFS:150626102', $3, "
            "$4, $4, $5)",
            ids["action"],
            ids["incident"],
            ACTOR,
            now,
            NOTE,
        )
    finally:
        await connection.close()
    return ids


async def sealed_columns(settings: Settings) -> list[Any]:
    connection = await asyncpg.connect(settings.plain_database_url)
    try:
        return [
            json.loads(value)
            for value in (
                await connection.fetchval(
                    "SELECT reporter FROM intake.incidents WHERE reporter ? 'phone'"
                ),
                await connection.fetchval("SELECT reporter FROM intake.reports"),
                await connection.fetchval("SELECT text FROM intake.reports"),
                await connection.fetchval("SELECT note FROM intake.actions"),
                await connection.fetchval("SELECT actor_name FROM intake.actions"),
                await connection.fetchval("SELECT actor_name FROM intake.incident_links"),
                await connection.fetchval("SELECT unlinked_actor_name FROM intake.incident_links"),
            )
        ]
    finally:
        await connection.close()


def assert_sealed_with(kid: str, *values: Any) -> None:
    """Every value (a reporter: its phone) is sealed with key `kid`, and holds nothing else."""
    for value in values:
        sealed = value["phone"] if "phone" in value else value
        assert set(sealed) == {"sealed"} and sealed["sealed"]["kid"] == kid, value


async def test_the_migration_seals_rows_written_before_and_a_rotation_reseals_them(
    infra_settings: Settings, work_dir: Any
) -> None:
    keys = {
        **json.loads(development_secrets(work_dir)["PII_KEYS"]),
        "rotated-2": new_key(),
    }
    first = sorted(keys)[0]
    async with scratch_database(
        infra_settings.plain_database_url, **with_keys({first: keys[first]})
    ) as settings:
        await migrate(settings, "intake", "0006")
        await write_clear_rows(settings.plain_database_url)
        await migrate(settings, "intake")

        reporter, report_reporter, text, note, actor, linker, unlinker = await sealed_columns(
            settings
        )
        assert_sealed_with(first, text, note, actor, linker, unlinker, reporter, report_reporter)
        assert reporter["name"] == "李明"  # the officer's name: shown to whoever reads it
        cipher = PiiCipher.from_settings(settings)
        assert cipher.open_value(text, "text") == TEXT
        assert cipher.open_value(note, "note") == NOTE
        assert cipher.open_value(actor, "actor_name") == ACTOR
        assert cipher.open_value(unlinker, "unlinked_actor_name") == ACTOR
        assert cipher.open_subjects(reporter)["phone"] == PHONE

        rotated = settings.model_copy(
            update={
                "pii_keys": {key_id: SecretStr(key) for key_id, key in keys.items()},
                "pii_current_key_id": "rotated-2",
            }
        )
        assert await reseal(rotated) == 4  # the incident, its report, its action, the link
        assert await reseal(rotated) == 0
        columns = await sealed_columns(settings)
        assert_sealed_with("rotated-2", *columns[2:], *columns[:2])
        note = columns[3]
        assert PiiCipher.from_settings(rotated).open_value(note, "note") == NOTE


async def test_the_migration_refuses_to_leave_clear_rows_without_a_key(
    infra_settings: Settings,
) -> None:
    async with scratch_database(
        infra_settings.plain_database_url, **with_keys({"k": new_key()})
    ) as settings:
        keyless = settings.model_copy(update={"pii_keys": {}, "pii_current_key_id": None})
        await migrate(keyless, "intake", "0006")
        await write_clear_rows(settings.plain_database_url)
        try:
            await migrate(keyless, "intake")
        except RuntimeError as refused:
            assert "PII_KEYS" in str(refused)
        else:
            raise AssertionError("0007 left clear text behind without a key")
        connection = await asyncpg.connect(settings.plain_database_url)
        try:
            version = await connection.fetchval("SELECT version_num FROM intake.alembic_version")
        finally:
            await connection.close()
        assert version == "0006"
