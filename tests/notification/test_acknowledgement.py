"""Acknowledgement end to end: the signed link, idempotence, refused tokens, and the walk down
the contact list to `notification.unacknowledged` when nobody acknowledges."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import httpx

from services.notification.ack import AckSigner
from shared.events import CloudEvent
from tests.notification.builders import obligation_created
from tests.notification.conftest import ACK_SECONDS, ACK_SECRET, NotificationSystem
from tests.notification.loopback import Gateway


def local(url: str) -> str:
    """The acknowledgement link's path and query, to call the service under test with."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def first_alert(gateway: Gateway, path: str, incident_id: str) -> dict:
    for _ in range(200):
        alerts = [call.json() for call in gateway.calls_to(path)]
        mine = [alert for alert in alerts if alert["incident_id"] == incident_id]
        if mine:
            return mine[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no alert for {incident_id} at {path}")


async def alerted(system: NotificationSystem, party: str, path: str) -> tuple[CloudEvent, dict]:
    """A new routing decision for `party`, and the alert its first contact received at `path`."""
    event = obligation_created(party)
    await system.publish(event)
    return event, await first_alert(system.gateway, path, event.subject)


async def test_acknowledged_alert_is_published_once_and_stops_the_walk(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    event, alert = await alerted(system, "BJO", "/ack-a")
    link = alert["ack_url"]
    assert link.startswith(f"http://notification.test/v1/notifications/{alert['notification_id']}")
    assert link in alert["text"]

    page = await system.api.get(local(link))
    assert page.status_code == 200 and 'method="post"' in page.text
    assert not system.events_of(event.subject, "notification.acknowledged")  # opening is no ack

    first = await system.api.post(local(link))
    assert first.status_code == 200, first.text
    assert first.json()["replayed"] is False
    assert (first.json()["contact_index"], first.json()["channel"]) == (0, "webhook")
    again = await system.api.post(local(link))
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["acknowledged_at"] == first.json()["acknowledged_at"]

    [acknowledged] = await system.wait_for_event(event.subject, "notification.acknowledged")
    assert acknowledged.data.party == "BJO" and acknowledged.data.drill is False
    assert acknowledged.data.obligation_id == event.data.obligation_id
    assert str(acknowledged.data.notification_id) == alert["notification_id"]

    await asyncio.sleep(ACK_SECONDS + 0.7)  # past the ACK window: the walk must have stopped
    assert not [c for c in system.gateway.calls_to("/ack-b") if event.subject in c.body.decode()]
    assert not system.events_of(event.subject, "notification.unacknowledged")
    assert len(system.events_of(event.subject, "notification.acknowledged")) == 1
    [notification] = await system.notifications(event.subject)
    assert notification["status"] == "ACKNOWLEDGED"
    assert notification["acknowledged_by"].endswith("/ack-a")
    assert notification["ack_due_at"] is None


async def test_the_link_opens_the_alert_as_sent_and_the_button_leads_to_the_record(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    event, alert = await alerted(system, "BJO", "/ack-a")
    link, record = alert["ack_url"], alert["record_url"]
    assert record.endswith(f"/{event.subject}")

    page = await system.api.get(local(link))
    assert page.status_code == 200 and page.headers["referrer-policy"] == "no-referrer"
    assert alert["title"] in page.text and 'id="ack-form"' in page.text
    said = [line for line in alert["text"].splitlines() if link not in line and record not in line]
    assert all(line in page.text for line in said)  # what was sent, no more
    assert f'href="{record}"' in page.text and link not in page.text

    done = await system.api.post(local(link), headers={"Accept": "text/html"})
    assert done.status_code == 200 and 'data-acknowledged="true"' in done.text
    assert f'href="{record}"' in done.text and "确认已记录" in done.text
    again = await system.api.get(local(link))
    assert 'data-acknowledged="true"' in again.text and 'id="ack-form"' not in again.text
    await system.wait_for_event(event.subject, "notification.acknowledged")


async def test_token_in_a_json_body_is_accepted_too(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    event, alert = await alerted(system, "BJO", "/ack-a")
    token = urlsplit(alert["ack_url"]).query.removeprefix("token=")
    answer = await system.api.post(
        f"/v1/notifications/{alert['notification_id']}/ack", json={"token": token}
    )
    assert answer.status_code == 200 and answer.json()["replayed"] is False
    await system.wait_for_event(event.subject, "notification.acknowledged")


def assert_problem(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith(kind)


async def test_expired_forged_and_missing_tokens_are_refused(
    notification_system: NotificationSystem,
) -> None:
    system = notification_system
    event, alert = await alerted(system, "BJO", "/ack-a")
    notification_id = UUID(alert["notification_id"])
    path = f"/v1/notifications/{notification_id}/ack"
    ours = AckSigner(ACK_SECRET.encode(), 60, "http://notification.test")
    theirs = AckSigner(b"somebody else's key", 60, "http://notification.test")
    now = datetime.now(UTC)

    expired = ours.token(notification_id, 0, now - timedelta(seconds=1))
    assert_problem(await system.api.post(path, params={"token": expired}), 401, "ack-token-expired")
    forged = theirs.token(notification_id, 0, now + timedelta(hours=1))
    assert_problem(await system.api.post(path, params={"token": forged}), 403, "ack-token-invalid")
    forged_expired = theirs.token(notification_id, 0, now - timedelta(hours=1))
    assert_problem(
        await system.api.post(path, params={"token": forged_expired}), 403, "ack-token-invalid"
    )
    valid = urlsplit(alert["ack_url"]).query.removeprefix("token=")
    other_contact = valid.replace("1.0.", "1.1.", 1)
    assert_problem(
        await system.api.post(path, params={"token": other_contact}), 403, "ack-token-invalid"
    )
    other_alert = f"/v1/notifications/{uuid4()}/ack"
    assert_problem(
        await system.api.post(other_alert, params={"token": valid}), 403, "ack-token-invalid"
    )
    assert_problem(
        await system.api.post(path, params={"token": "garbage"}), 403, "ack-token-invalid"
    )
    missing = await system.api.post(path)
    assert_problem(missing, 401, "ack-token-missing")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_problem(await system.api.get(path, params={"token": expired}), 401, "ack-token-expired")
    unknown = uuid4()
    unknown_token = ours.token(unknown, 0, now + timedelta(hours=1))
    answer = await system.api.post(
        f"/v1/notifications/{unknown}/ack", params={"token": unknown_token}
    )
    assert_problem(answer, 404, "not-found")

    await asyncio.sleep(0.3)
    assert not system.events_of(event.subject, "notification.acknowledged")
    [notification] = await system.notifications(event.subject)
    assert notification["acknowledged_at"] is None


async def test_unacknowledged_alert_walks_the_contact_list_then_is_reported(
    notification_system: NotificationSystem,
) -> None:
    system, gateway = notification_system, notification_system.gateway
    event, first = await alerted(system, "BLO", "/walk-a")
    second = await first_alert(gateway, "/walk-b", event.subject)
    assert first["contact_index"] == 0 and second["contact_index"] == 1
    assert first["ack_url"] != second["ack_url"]  # each contact has its own token

    [given_up] = await system.wait_for_event(
        event.subject, "notification.unacknowledged", timeout=3 * ACK_SECONDS + 5
    )
    assert given_up.data.contacts_tried == 2 and given_up.data.party == "BLO"
    assert given_up.data.drill is False
    assert given_up.data.obligation_id == event.data.obligation_id
    [to_a, to_b] = [
        next(c for c in gateway.calls_to(path) if event.subject in c.body.decode())
        for path in ("/walk-a", "/walk-b")
    ]
    assert to_b.at - to_a.at >= ACK_SECONDS - 0.1
    delivered = system.events_of(event.subject, "notification.delivered")
    assert [e.data.contact.rsplit("/", 1)[1] for e in delivered] == ["walk-a", "walk-b"]

    [notification] = await system.notifications(event.subject)
    assert notification["status"] == "UNACKNOWLEDGED" and notification["closed_at"]
    assert [d["status"] for d in notification["deliveries"]] == ["DELIVERED", "DELIVERED"]

    # A late acknowledgement still counts: the report did arrive, if late.
    late = await system.api.post(local(first["ack_url"]))
    assert late.status_code == 200 and late.json()["contact_index"] == 0
    await system.wait_for_event(event.subject, "notification.acknowledged")


async def test_the_policys_ack_deadline_is_kept_with_the_alert_and_counted_from_delivery(
    notification_system: NotificationSystem,
) -> None:
    """Issue 12 point 8: ACK is the policy's (`ack_seconds` of the routing decision), not the
    service's NOTIFICATION_ACK_SECONDS (1.5 s here), which only a decision carrying none falls
    back to (the walk above waits that)."""
    system = notification_system
    event = obligation_created("SFS:150626103", ack_seconds=120.0)
    await system.publish(event)
    alert = await system.wait_for_notification(
        event.subject, lambda row: row["ack_due_at"] is not None
    )
    assert (alert["status"], alert["ack_seconds"]) == ("DELIVERED", 120.0)
    waited = datetime.fromisoformat(alert["ack_due_at"]) - datetime.fromisoformat(
        alert["delivered_at"]
    )
    assert abs(waited.total_seconds() - 120.0) < 1.0, waited
