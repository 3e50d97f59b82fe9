"""R20: a duty a merge of incidents moves keeps its alert: the new duty's `obligation.created`
(`moved_from`) takes the alert over and the old duty's `obligation.waived` (`moved_to`) does not
withdraw it. The two are keyed by different incidents, so they arrive in either order; every
order ends with one alert, for the new duty, and nobody alerted twice."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from shared.events import CloudEvent
from shared.events.models import ObligationCreated, ObligationWaived
from tests.integration.helpers import eventually
from tests.notification.builders import created, moved, obligation, obligation_waived
from tests.notification.conftest import NotificationSystem

PARTY = "SFS:150626104"  # the local file: delivered at once, acknowledged by nobody
MARKER_RULE = "R9"  # the duties moved are R6's


def first(incident_id: UUID | None = None) -> ObligationCreated:
    return obligation(PARTY, incident_id=incident_id or uuid4(), ack_seconds=600.0)


def waived_to(old: ObligationCreated, new: ObligationCreated) -> CloudEvent:
    waived = obligation_waived(old, "事件已并入另一事件，本项转由该事件办理（R20）").data
    assert isinstance(waived, ObligationWaived)
    moving = waived.model_copy(update={"moved_to": new.obligation_id})
    return CloudEvent.new("escalation", moving, old.incident_id)


async def alerts_when(
    system: NotificationSystem, incident_id: UUID, *obligation_ids: UUID
) -> list[dict[str, Any]]:
    """The incident's alerts, once there is one for each of `obligation_ids`."""
    wanted = {str(obligation_id) for obligation_id in obligation_ids}
    return await eventually(
        lambda: system.notifications(incident_id),
        lambda rows: wanted <= {row["obligation_id"] for row in rows},
    )


async def settled(system: NotificationSystem, incident_id: UUID) -> list[dict[str, Any]]:
    """The incident's alerts once all published about it so far was handled: a marker alert
    published after it, on the same partition, has arrived."""
    marker = first(incident_id).model_copy(update={"rule_id": MARKER_RULE})
    await system.publish(created(marker))
    rows = await alerts_when(system, incident_id, marker.obligation_id)
    return [row for row in rows if row["rule_id"] != MARKER_RULE]


async def alerted(system: NotificationSystem) -> tuple[ObligationCreated, dict[str, Any]]:
    """A duty, once its alert exists."""
    duty = first()
    await system.publish(created(duty))
    [alert] = await alerts_when(system, duty.incident_id, duty.obligation_id)
    return duty, alert


async def test_R20_waived_first_then_moved_the_alert_carries_on(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    old, alert = await alerted(system)
    new = moved(old)
    await system.publish(waived_to(old, new))
    [kept] = await settled(system, old.incident_id)
    assert kept["id"] == alert["id"] and kept["status"] != "WITHDRAWN"
    await system.publish(created(new))
    [carried] = await alerts_when(system, new.incident_id, new.obligation_id)
    assert carried["id"] == alert["id"] and carried["status"] != "WITHDRAWN"
    assert await settled(system, old.incident_id) == []


async def test_R20_moved_first_then_waived_the_alert_carries_on(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    old, alert = await alerted(system)
    new = moved(old)
    await system.publish(created(new))
    [carried] = await alerts_when(system, new.incident_id, new.obligation_id)
    assert carried["id"] == alert["id"]
    await system.publish(waived_to(old, new))
    assert await settled(system, old.incident_id) == []
    [still] = await settled(system, new.incident_id)
    assert still["id"] == alert["id"] and still["status"] != "WITHDRAWN"


async def test_R20_the_moved_duty_before_the_old_one_alerts_once_and_the_old_one_never(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    old = first()
    new = moved(old)
    await system.publish(created(new))
    [alert] = await alerts_when(system, new.incident_id, new.obligation_id)
    await system.publish(created(old))
    await system.publish(waived_to(old, new))
    assert await settled(system, old.incident_id) == []
    assert [row["id"] for row in await settled(system, new.incident_id)] == [alert["id"]]


async def test_R20_a_duty_whose_alert_was_withdrawn_is_alerted_again_when_given_back(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    doubled, alert = await alerted(system)
    await system.publish(obligation_waived(doubled, "与并入的事件同一职责重复（R20）"))
    [withdrawn] = await settled(system, doubled.incident_id)
    assert withdrawn["status"] == "WITHDRAWN"
    again = doubled.model_copy(
        update={"obligation_id": uuid4(), "moved_from": doubled.obligation_id}
    )
    await system.publish(created(again))
    rows = await alerts_when(system, doubled.incident_id, again.obligation_id)
    [new_alert] = [row for row in rows if row["obligation_id"] == str(again.obligation_id)]
    assert new_alert["id"] != alert["id"]
