"""Retention of what was sent: a finished delivery's message (the text and the acknowledgement
link it carried) is emptied once older than NOTIFICATION_MESSAGE_RETENTION_HOURS; a newer one
stays, and so does every delivery's record of to whom, how and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from services.notification import retention
from shared.settings import Settings
from tests.notification.builders import obligation_created
from tests.notification.conftest import NotificationSystem
from tests.support import execute_sql, purge_all


async def delivered(system: NotificationSystem) -> UUID:
    event = obligation_created("SFS:150626103")
    await system.publish(event)
    alert = await system.wait_for_notification(
        event.data.incident_id,
        lambda n: bool(n["deliveries"]) and n["deliveries"][0]["status"] == "DELIVERED",
    )
    return UUID(alert["id"])


async def messages(url: str, notification_ids: list[UUID]) -> dict[UUID, str | None]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT notification_id, message FROM notification.deliveries "
            "WHERE notification_id = ANY($1::uuid[])",
            notification_ids,
        )
    finally:
        await connection.close()
    return {row["notification_id"]: row["message"] for row in rows}


async def test_messages_older_than_their_period_are_emptied_and_newer_ones_kept(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    old, new = await delivered(system), await delivered(system)
    settings = Settings(database_url=system.infra.database_url)
    period = timedelta(hours=settings.notification_message_retention_hours)
    await execute_sql(
        settings,
        "UPDATE notification.deliveries SET created_at = $2 WHERE notification_id = $1",
        old,
        datetime.now(UTC) - period - timedelta(minutes=1),
    )
    before = await messages(settings.plain_database_url, [old, new])
    assert "/ack?token=" in before[old] and "/ack?token=" in before[new]

    (sent_messages,) = retention.purges(settings)
    await purge_all(settings, sent_messages)

    after = await messages(settings.plain_database_url, [old, new])
    assert after[old] is None
    assert after[new] == before[new]
    (kept,) = (await system.api.get(f"/v1/notifications/{old}")).json()["deliveries"]
    assert kept["status"] == "DELIVERED" and kept["delivered_at"] is not None
