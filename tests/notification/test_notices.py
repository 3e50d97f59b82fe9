"""An action escalation refuses after intake accepted it (two parties racing) is told to the
party that recorded it: a notice, delivered once, with the reason in words and no
acknowledgement link; it asks nothing, so it walks no contact list and climbs no ladder."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shared.domain.vocabulary import ActionCode, LifecycleStatus
from shared.events import CloudEvent
from shared.events.models import ActionRejected
from tests.notification.conftest import NotificationSystem

RECORDER = "SFS:150626200"  # 苏力德苏木司法所: its contact is /notice


def refusal(**overrides: object) -> CloudEvent:
    fields: dict[str, object] = {
        "incident_id": uuid.uuid4(),
        "action_id": uuid.uuid4(),
        "action": ActionCode.ON_SCENE,
        "status": LifecycleStatus.CLOSED,
        "reason": "「已到现场」不适用于事件当前状态「已结束」",
        "party": RECORDER,
        "recorded_at": datetime(2026, 11, 30, 6, 5, tzinfo=UTC),
    }
    data = ActionRejected.model_validate({**fields, **overrides})
    return CloudEvent.new("escalation", data, data.incident_id)


async def test_a_refused_action_reaches_the_party_that_recorded_it_as_a_notice(
    notification_system: NotificationSystem,
) -> None:
    system, gateway = notification_system, notification_system.gateway
    event = refusal()
    await system.publish(event)
    await system.publish(event)  # redelivered: still one notice
    [attempt] = await system.wait_for_event(event.subject, "notification.notice_attempted")
    assert (attempt.data.outcome, attempt.data.party) == ("DELIVERED", RECORDER)
    assert attempt.data.about == "action.rejected"

    notice = await system.wait_for_notification(
        event.subject, lambda row: row["status"] == "INFORMED"
    )
    assert notice["kind"] == "NOTICE" and notice["obligation_id"] is None
    calls = [call for call in gateway.calls_to("/notice") if event.subject in call.body.decode()]
    assert len(calls) == 1
    sent = calls[0].json()
    assert sent["ack_url"] is None
    assert "您于2026-11-30 14:05记录的「已到现场」未被采纳" in sent["text"]
    assert "事件当前状态「已结束」" in sent["text"]
    # Nothing to acknowledge: no unacknowledged report, nothing for the ladder.
    assert not system.events_of(event.subject, "notification.unacknowledged")
    assert not system.events_of(event.subject, "notification.delivered")


async def test_a_refusal_that_names_nobody_tells_nobody(
    notification_system: NotificationSystem,
) -> None:
    """Refusals published before they named who recorded the action stay on the record only.
    A second refusal of the same incident (the same partition, so heard after it) shows the
    first was taken and passed over."""
    silent = refusal(party=None)
    marker = refusal(incident_id=silent.data.incident_id)
    for event in (silent, marker):
        await notification_system.publish(event)
    await notification_system.wait_for_event(marker.subject, "notification.notice_attempted")
    [only] = await notification_system.notifications(marker.subject)
    assert only["kind"] == "NOTICE"
