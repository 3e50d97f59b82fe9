"""Retention in intake: an Idempotency-Key replays its report for
INTAKE_IDEMPOTENCY_KEY_RETENTION_HOURS, then goes; a newer key stays and still replays."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from services.intake import retention
from shared.settings import Settings
from tests.integration.helpers import violence_report
from tests.support import execute_sql, purge_all

CALLER = "SFS:150626102"


async def reported_with_key(clients: dict[str, httpx.AsyncClient], key: str) -> str:
    response = await clients["intake"].post(
        "/v1/incidents", json=violence_report(), headers={"Idempotency-Key": key}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def keys_kept(url: str, keys: list[str]) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT key FROM intake.idempotency_keys WHERE key = ANY($1::text[])", keys
        )
    finally:
        await connection.close()
    return {row["key"] for row in rows}


async def test_idempotency_keys_older_than_their_period_go_and_newer_ones_stay(
    clients: dict[str, httpx.AsyncClient], infra_settings: Settings
) -> None:
    old, new = f"old-{uuid.uuid4()}", f"new-{uuid.uuid4()}"
    await reported_with_key(clients, old)
    await reported_with_key(clients, new)
    period = timedelta(hours=infra_settings.intake_idempotency_key_retention_hours)
    await execute_sql(
        infra_settings,
        "UPDATE intake.idempotency_keys SET created_at = $2 WHERE key = $1",
        old,
        datetime.now(UTC) - period - timedelta(minutes=1),
    )
    (expired_keys,) = retention.purges(infra_settings)
    await purge_all(infra_settings, expired_keys)

    assert await keys_kept(infra_settings.plain_database_url, [old, new]) == {new}
    # The newer key still replays; the expired one no longer answers for its report: the same
    # key with another body is a new report, not a conflict.
    replay = await clients["intake"].post(
        "/v1/incidents", json=violence_report(), headers={"Idempotency-Key": new}
    )
    assert replay.status_code == 409  # another body (a new subject id) under a kept key
    again = await clients["intake"].post(
        "/v1/incidents", json=violence_report(), headers={"Idempotency-Key": old}
    )
    assert again.status_code == 201, again.text


async def test_a_batch_at_a_time_purges_a_backlog_whole(infra_settings: Settings) -> None:
    """More expired keys than one batch: every batch goes, each its own short transaction."""
    long_ago = datetime.now(UTC) - timedelta(days=365)
    keys = [f"backlog-{uuid.uuid4()}" for _ in range(7)]
    connection = await asyncpg.connect(infra_settings.plain_database_url)
    try:
        await connection.executemany(
            "INSERT INTO intake.idempotency_keys (caller, key, request_hash, incident_id, "
            "created_at) VALUES ($1, $2, 'h', $3, $4)",
            [(CALLER, key, uuid.uuid4(), long_ago) for key in keys],
        )
    finally:
        await connection.close()
    (expired_keys,) = retention.purges(infra_settings)
    await purge_all(infra_settings, expired_keys, batch=3)
    assert await keys_kept(infra_settings.plain_database_url, keys) == set()
