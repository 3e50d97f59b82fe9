"""The edge: authentication on every endpoint, jurisdiction, personal data, input limits."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import create_engine, database_unavailable, sqlstate
from shared.settings import SERVICE_NAMES, Settings
from tests.integration.helpers import eventually, report, timeline_with, violence_report
from tests.support import PATIENCE_SECONDS
from tools.devrun import ServiceProcesses

# Health, metrics, the signed acknowledgement link, and the log's checkpoints and proofs (hashes
# only, there to be checked by anyone; cosignatures prove themselves).
OPEN_PATHS = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/notifications/{notification_id}/ack",
    "/v1/log/checkpoint",
    "/v1/log/key",
    "/v1/log/cosignatures",
    "/v1/log/proof/inclusion",
    "/v1/log/proof/consistency",
}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "7" if m[1] == "index" else str(uuid.uuid4()), path)


async def test_every_endpoint_refuses_a_caller_without_a_valid_token(
    system: ServiceProcesses,
) -> None:
    checked = 0
    async with httpx.AsyncClient(timeout=PATIENCE_SECONDS) as anonymous:
        for service in SERVICE_NAMES:
            spec = (await anonymous.get(f"{system.url(service)}/openapi.json")).json()
            for path, methods in spec["paths"].items():
                if path in OPEN_PATHS:
                    continue
                for method in methods:
                    url = f"{system.url(service)}{concrete(path)}"
                    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}):
                        response = await anonymous.request(method, url, headers=headers, json={})
                        assert response.status_code == 401, (service, method, path, headers)
                        assert response.headers["content-type"] == "application/problem+json"
                        assert response.headers["www-authenticate"].startswith("Bearer")
                        checked += 1
    assert checked >= 2 * 12  # every protected route of the four services, twice


async def test_a_township_party_is_refused_another_townships_incident(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients)  # 图克镇
    outsider = {"X-Act-As": "SFS:150626100"}  # 嘎鲁图镇司法所
    for service, path in (
        ("intake", f"/v1/incidents/{incident_id}"),
        ("escalation", f"/v1/incidents/{incident_id}/obligations"),
        ("audit", f"/v1/incidents/{incident_id}/timeline"),
    ):
        response = await eventually(
            lambda service=service, path=path: clients[service].get(path, headers=outsider),
            lambda response: response.status_code != 404,
        )
        assert response.status_code == 403, (service, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    notifications = await clients["notification"].get(
        "/v1/notifications", params={"incident_id": incident_id}, headers=outsider
    )
    assert notifications.status_code == 403
    action = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/actions",
        json={"action": "ON_SCENE", "party": "SFS:150626100", "actor_name": "某"},
    )
    assert action.status_code == 403
    own = await clients["intake"].get(
        f"/v1/incidents/{incident_id}", headers={"X-Act-As": "PPS:150626102 incidents:read"}
    )
    assert own.status_code == 200


async def test_a_party_speaks_only_for_itself_and_readers_write_nothing(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    as_someone_else = await clients["intake"].post(
        "/v1/incidents", json=violence_report(), headers={"X-Act-As": "TCG:150626102"}
    )
    assert as_someone_else.status_code == 403
    assert "may not speak for" in as_someone_else.json()["detail"]
    for reader in ("CEO", "AUDITOR"):
        refused = await clients["intake"].post(
            "/v1/incidents",
            json=violence_report(reporter={"party": "BLO", "name": "值班员"}),
            headers={"X-Act-As": reader},
        )
        assert refused.status_code == 403


async def test_personal_data_is_sealed_at_rest_masked_by_default_and_unmasked_reads_audited(
    clients: dict[str, httpx.AsyncClient], infra_settings: Settings
) -> None:
    incident_id = await report(
        clients, summary="王某某持刀（身份证150626199001011234）", location="王某某家门口"
    )
    response = await clients["intake"].get(f"/v1/incidents/{incident_id}")
    assert response.status_code == 200, response.text
    masked = response.json()
    assert masked["personal_data"] == "masked"
    assert masked["facts"]["subjects"][0]["name"] == "王**"
    assert "王某某" not in str(masked) and "150626199001011234" not in str(masked)

    shown = await clients["intake"].get(
        f"/v1/incidents/{incident_id}", headers={"X-Act-As": "BLO incidents:read pii:read"}
    )
    assert shown.status_code == 200, shown.text
    assert shown.json()["personal_data"] == "shown"
    assert shown.json()["facts"]["subjects"][0]["id_number"] == "150626199001011234"
    timeline = await timeline_with(clients["audit"], incident_id, "incident.personal_data_read")
    read = next(
        e for e in timeline.json()["entries"] if e["ce_type"] == "incident.personal_data_read"
    )
    assert read["event"]["data"]["party"] == "BLO"
    # Nothing on the topics carries the clear name or ID number.
    assert "王某某" not in timeline.text and "150626199001011234" not in timeline.text

    engine = create_engine(infra_settings, pool_size=1)
    try:
        async with engine.connect() as connection:
            stored = await connection.execute(
                text(
                    "SELECT facts::text, (SELECT string_agg(changes::text, '') FROM intake.reports"
                    " WHERE incident_id = :id) FROM intake.incidents WHERE id = :id"
                ),
                {"id": incident_id},
            )
            facts, changes = stored.one()
    finally:
        await engine.dispose()
    assert '"sealed"' in facts and '"kid"' in facts
    for clear in ("150626199001011234", 'SQJZ-2024-0107", "name"'):
        assert clear not in facts and clear not in changes
    assert "王某某" not in facts.split('"subjects"')[1]


async def test_times_in_the_future_are_refused(clients: dict[str, httpx.AsyncClient]) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = await clients["intake"].post(
        "/v1/incidents", json=violence_report(occurred_at=tomorrow)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "occurred_at"
    naive = await clients["intake"].post(
        "/v1/incidents", json=violence_report(occurred_at="2026-01-01T08:00:00")
    )
    assert naive.status_code == 422


async def test_bodies_too_large_are_refused(clients: dict[str, httpx.AsyncClient]) -> None:
    huge = violence_report(summary="很" * 200_000)
    response = await clients["intake"].post("/v1/incidents", json=huge)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_callers_too_fast_are_refused_with_retry_after(work_dir: Path) -> None:
    """The intake app as deployed, given a limit no machine can outrun: two requests per caller,
    then one more every 1,000 s. The third request of a caller is refused whatever the speed of
    the machine; another caller still has its own bucket."""
    from services.intake.app import create_app
    from tests.support import PartyAuth, test_keys
    from tools.devrun import development_secrets

    limited = Settings(
        rate_limit_per_second=0.001,
        rate_limit_burst=2,
        auth_jwks_file=Path(development_secrets(work_dir)["AUTH_JWKS_FILE"]),
        local_data_dir=work_dir,
    )
    auth = PartyAuth(test_keys(work_dir)[0])
    app = create_app(limited)
    # No lifespan: the limit answers before any route, so nothing else of the service is needed.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake"
    ) as client:
        blo = {"Authorization": f"Bearer {auth.token('BLO')}"}
        answers = [(await client.get("/openapi.json", headers=blo)).status_code for _ in range(3)]
        assert answers == [200, 200, 429]
        refused = await client.get("/openapi.json", headers=blo)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert 990 <= int(refused.headers["Retry-After"]) <= 1000
        assert refused.json()["status"] == 429
        other = {"Authorization": f"Bearer {auth.token('PPS:150626102')}"}
        assert (await client.get("/openapi.json", headers=other)).status_code == 200
        assert (await client.get("/healthz", headers=blo)).status_code == 200  # never limited


async def test_rotating_the_personal_data_key_reseals_old_rows(
    clients: dict[str, httpx.AsyncClient], infra_settings: Settings, work_dir
) -> None:
    import json as json_module

    from pydantic import SecretStr

    from services.intake.reseal import reseal
    from shared.pii import new_key
    from tools.devrun import development_secrets

    incident_id = await report(clients)
    old = json_module.loads(development_secrets(work_dir)["PII_KEYS"])
    keys = {**{k: SecretStr(v) for k, v in old.items()}, "rotated-2": SecretStr(new_key())}
    rotated = infra_settings.model_copy(
        update={"pii_keys": keys, "pii_current_key_id": "rotated-2"}
    )
    assert await reseal(rotated) >= 1
    assert await reseal(rotated) == 0  # nothing left under the old key
    engine = create_engine(infra_settings, pool_size=1)
    try:
        async with engine.connect() as connection:
            kid = await connection.scalar(
                text(
                    "SELECT facts->'subjects'->'sealed'->>'kid' FROM intake.incidents"
                    " WHERE id = :id"
                ),
                {"id": incident_id},
            )
    finally:
        await engine.dispose()
    assert kid == "rotated-2"
    # Back to the key the running intake holds, so the other tests read what they wrote.
    back = rotated.model_copy(update={"pii_current_key_id": next(iter(old))})
    assert await reseal(back) >= 1
    shown = await clients["intake"].get(f"/v1/incidents/{incident_id}")
    assert shown.status_code == 200


async def test_a_runaway_statement_is_cancelled_and_answered_as_unavailable(
    infra_settings: Settings,
) -> None:
    """Every service session carries a statement timeout: a statement running longer is
    cancelled (57014), which callers treat as a busy database (503 with Retry-After, or a
    consumer's retry), never as a hang holding locks."""
    limited = infra_settings.model_copy(update={"database_statement_timeout_seconds": 0.2})
    engine = create_engine(limited, pool_size=1)
    try:
        async with engine.connect() as connection:
            shown = await connection.execute(text("SHOW statement_timeout"))
            assert shown.scalar_one() == "200ms"
            with pytest.raises(DBAPIError) as cancelled:
                await connection.execute(text("SELECT pg_sleep(5)"))
    finally:
        await engine.dispose()
    assert sqlstate(cancelled.value) == "57014"
    assert database_unavailable(cancelled.value)


async def test_a_service_connection_names_its_service_to_the_database(
    infra_settings: Settings,
) -> None:
    """pg_stat_activity (and the server log's `%a`) tell an operator whose connection holds a
    lock or runs a slow statement."""
    engine = create_engine(infra_settings, pool_size=1, application_name="escalation")
    try:
        async with engine.connect() as connection:
            named = await connection.execute(
                text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            )
            assert named.scalar_one() == "escalation"
    finally:
        await engine.dispose()


async def test_a_service_keeps_its_connections_and_opens_none_past_its_pool(
    infra_settings: Settings,
) -> None:
    """DATABASE_POOL_SIZE connections at most, kept between bursts: work past them waits for
    one, rather than opening a connection that is closed again after it."""
    engine = create_engine(infra_settings.model_copy(update={"database_pool_size": 3}))
    opened: list[object] = []
    event.listen(engine.sync_engine, "connect", lambda *args: opened.append(args[0]))
    held: list[AsyncConnection] = []

    async def connect() -> AsyncConnection:
        return await engine.connect()

    try:
        for _burst in range(2):
            held = [await connect() for _ in range(3)]
            waiting = asyncio.create_task(connect())
            await asyncio.sleep(0.2)
            assert not waiting.done()  # no fourth connection: it waits for one of the three
            await held.pop().close()
            held.append(await waiting)
            for connection in held:
                await connection.close()
            held = []
    finally:
        for connection in held:
            await connection.close()
        await engine.dispose()
    assert len(opened) == 3
