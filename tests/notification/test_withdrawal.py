"""An obligation met or waived before its alert was acknowledged stops the alert: no next
contact, no `notification.unacknowledged` (so the ladder is not climbed for a duty that is done),
the reason kept on the alert and published as `notification.withdrawn`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shared.events import CloudEvent
from tests.notification.builders import (
    obligation,
    obligation_created,
    obligation_met,
    obligation_waived,
)
from tests.notification.conftest import NotificationSystem
from tests.notification.loopback import hang
from tests.support import PATIENCE_SECONDS

WALKING_PARTY = "PPS:150626104"  # contacts /withdraw-a, then /withdraw-b
SLOW_PARTY = "TCG:150626104"  # contacts /withdraw-slow (never answers in time), /withdraw-next
MARKER_PARTY = "SFS:150626104"  # the local file


async def alerts_once(
    system: NotificationSystem, incident_id: str, ready: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The incident's alerts as soon as `ready` accepts them."""
    rows: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(PATIENCE_SECONDS):
            while not ready(rows := await system.notifications(incident_id)):
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"alerts not as expected: {rows}") from None
    return rows


async def first_alert(system: NotificationSystem, path: str, incident_id: str) -> None:
    """Wait until the contact at `path` was sent the incident's alert."""
    try:
        async with asyncio.timeout(PATIENCE_SECONDS):
            while not calls_about(system, path, incident_id):
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"no alert for {incident_id} at {path}") from None


def marker_delivered(system: NotificationSystem, incident_id: str) -> bool:
    delivered = system.events_of(incident_id, "notification.delivered")
    return any(event.data.party == MARKER_PARTY for event in delivered)


def calls_about(system: NotificationSystem, path: str, incident_id: str) -> list:
    return [call for call in system.gateway.calls_to(path) if incident_id in call.body.decode()]


async def test_a_waived_supervision_stops_its_walk_and_is_never_reported_unacknowledged(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    supervision = obligation(WALKING_PARTY)
    incident = str(supervision.incident_id)
    await system.publish(CloudEvent.new("escalation", supervision, supervision.incident_id))
    await first_alert(system, "/withdraw-a", incident)

    await system.publish(obligation_waived(supervision, "原事项已办结"))
    [withdrawn] = await system.wait_for_event(incident, "notification.withdrawn")
    assert withdrawn.data.obligation_id == supervision.obligation_id
    assert withdrawn.data.party == WALKING_PARTY
    assert withdrawn.data.reason == "义务已免除：原事项已办结"

    # The same walk, not withdrawn, started after this one stopped: once it has been reported
    # unacknowledged, the withdrawn alert would have been too.
    control = obligation_created(WALKING_PARTY)
    await system.publish(control)
    await system.wait_for_event(control.subject, "notification.unacknowledged")
    assert calls_about(system, "/withdraw-b", control.subject)

    assert not system.events_of(incident, "notification.unacknowledged")
    assert not calls_about(system, "/withdraw-b", incident)
    [alert] = await system.notifications(incident)
    assert alert["status"] == "WITHDRAWN"
    assert alert["withdrawn_reason"] == "义务已免除：原事项已办结"
    assert alert["closed_at"] and alert["ack_due_at"] is None
    assert [delivery["contact_index"] for delivery in alert["deliveries"]] == [0]


async def test_an_obligation_met_late_withdraws_its_alert_once(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    duty = obligation(WALKING_PARTY)
    incident = str(duty.incident_id)
    await system.publish(CloudEvent.new("escalation", duty, duty.incident_id))
    await system.publish(obligation_met(duty, late=True))
    # A later outcome of a withdrawn alert changes nothing.
    await system.publish(obligation_waived(duty, "事件已结束"))
    # Events of one incident are handled in order: once the alert of this later routing
    # decision exists, both outcomes before it were handled.
    await system.publish(obligation_created(MARKER_PARTY, incident_id=duty.incident_id))
    alerts = await alerts_once(system, incident, lambda rows: len(rows) == 2)
    # ... and its delivery is published after anything those outcomes published.
    await alerts_once(system, incident, lambda _: marker_delivered(system, incident))

    [withdrawn] = system.events_of(incident, "notification.withdrawn")
    assert withdrawn.data.reason == "义务已逾期办结"
    [alert] = [row for row in alerts if row["party"] == WALKING_PARTY]
    assert alert["status"] == "WITHDRAWN" and alert["withdrawn_reason"] == "义务已逾期办结"
    assert not calls_about(system, "/withdraw-b", incident)


async def test_a_send_in_flight_may_land_but_is_not_tried_again(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    released = asyncio.Event()
    # Longer than the send timeout: every send to this contact is a retryable timeout.
    system.gateway.answers["/withdraw-slow"] = hang(PATIENCE_SECONDS, released)
    try:
        duty = obligation(SLOW_PARTY)
        incident = str(duty.incident_id)
        await system.publish(CloudEvent.new("escalation", duty, duty.incident_id))
        await first_alert(system, "/withdraw-slow", incident)  # in flight now
        await system.publish(obligation_waived(duty, "原事项已办结"))
        await system.wait_for_event(incident, "notification.withdrawn")
        alert = await system.wait_for_notification(
            incident, lambda row: [d["status"] for d in row["deliveries"]] == ["CANCELLED"]
        )
    finally:
        released.set()
    assert alert["status"] == "WITHDRAWN"
    assert not calls_about(system, "/withdraw-next", incident)
    assert not system.events_of(incident, "notification.unacknowledged")
