"""A crash mid-retry: the retry is durable, and after a restart the alert is delivered once."""

from __future__ import annotations

import asyncio
import signal

from starlette.responses import Response

from tests.notification.builders import obligation_created
from tests.notification.conftest import NotificationSystem
from tests.notification.loopback import fail_first


async def test_killed_mid_retry_and_restarted_delivers_the_alert_once(
    notification_system: NotificationSystem,
) -> None:
    system, gateway = notification_system, notification_system.gateway
    gateway.answers["/crash"] = fail_first(
        2, Response(status_code=503, headers={"Retry-After": "1"})
    )
    event = obligation_created("PRO")
    await system.publish(event)
    await gateway.wait_for_calls("/crash", 1)

    # Between the first failure and its retry, a second away.
    system.services.stop_one("notification", signal.SIGKILL)
    await asyncio.sleep(0.5)
    assert len(gateway.calls_to("/crash")) == 1
    system.services.start_one("notification")
    await system.services.wait_ready("notification")

    [delivered] = await system.wait_for_event(event.subject, "notification.delivered")
    await asyncio.sleep(1.0)  # time for a second delivery, were there one
    calls = gateway.calls_to("/crash")
    assert len(calls) == 3  # failed before the crash, failed after it, delivered
    assert len({call.headers["idempotency-key"] for call in calls}) == 1
    assert len(system.events_of(event.subject, "notification.delivered")) == 1
    assert delivered.data.attempt == 3

    [notification] = await system.notifications(event.subject)
    [delivery] = notification["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("DELIVERED", 3)
    assert notification["attempts"][-1]["outcome"] == "DELIVERED"
