"""R16: a drill runs through the same pipeline, reaches only drill contacts (or the local file),
never a real contact and above all never a police station, and says it is a drill throughout."""

from __future__ import annotations

import asyncio
import json

from tests.notification.builders import obligation_created
from tests.notification.conftest import ACK_SECONDS, NotificationSystem


async def test_drill_reaches_only_drill_contacts_and_is_marked_everywhere(
    notification_system: NotificationSystem,
) -> None:
    system, gateway = notification_system, notification_system.gateway
    police = obligation_created("PPS:150626103", drill=True)
    incident_id = str(police.data.incident_id)
    command = obligation_created("TCG:150626103", drill=True, incident_id=police.data.incident_id)
    for event in (police, command):
        await system.publish(event)

    delivered = await system.wait_for_event(incident_id, "notification.delivered", count=2)
    by_party = {e.data.party: e.data for e in delivered}
    assert (by_party["PPS:150626103"].channel, by_party["PPS:150626103"].contact) == (
        "file",
        "演练",
    )
    assert by_party["TCG:150626103"].contact.endswith("/tcg-drill")

    def calls_for(path: str) -> list[dict]:
        alerts = [call.json() for call in gateway.calls_to(path)]
        return [alert for alert in alerts if alert["incident_id"] == incident_id]

    assert not calls_for("/police-real") and not calls_for("/tcg-real")
    [drill_alert] = calls_for("/tcg-drill")
    assert drill_alert["drill"] is True and drill_alert["title"].startswith("【演练】")
    assert "本条为应急演练" in drill_alert["text"]

    lines = (system.work_dir / "alerts.jsonl").read_text("utf-8").splitlines()
    [filed] = [
        alert
        for alert in map(json.loads, lines)
        if alert["incident_id"] == incident_id and alert["party"] == "PPS:150626103"
    ]
    assert filed["drill"] is True and filed["text"].startswith("【演练】")

    given_up = await system.wait_for_event(
        incident_id, "notification.unacknowledged", count=2, timeout=ACK_SECONDS + 5
    )
    assert all(event.data.drill for event in given_up)
    for notification in await system.notifications(incident_id):
        assert notification["drill"] is True
    await asyncio.sleep(0.2)
    assert not calls_for("/police-real") and not calls_for("/tcg-real")
