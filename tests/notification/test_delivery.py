"""Delivery semantics end to end: retries, fallback to the next contact, isolation from a hung
gateway, one send per (alert, contact) however often the directive arrives, every channel."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
from urllib.parse import unquote_plus

from starlette.responses import Response

from shared.events import CloudEvent
from tests.notification.builders import ID_NUMBER, obligation_created
from tests.notification.conftest import DINGTALK_SECRET, NotificationSystem
from tests.notification.loopback import Call, always, fail_first, hang


def for_incident(calls: list[Call], incident_id: str) -> list[Call]:
    return [call for call in calls if call.json().get("incident_id") == incident_id]


async def test_flaky_gateway_is_retried_with_backoff_and_delivered_once(
    notification_system: NotificationSystem,
) -> None:
    system, gateway = notification_system, notification_system.gateway
    gateway.answers["/flaky"] = fail_first(
        3,
        Response(status_code=503),
        Response(status_code=429, headers={"Retry-After": "1"}),
        Response(status_code=500),
    )
    event = obligation_created("PPS:150626100")
    await system.publish(event)

    [delivered] = await system.wait_for_event(event.subject, "notification.delivered")
    failed = system.events_of(event.subject, "notification.failed")
    assert [e.data.status_code for e in failed] == [503, 429, 500]
    assert [e.data.attempt for e in failed] == [1, 2, 3]
    assert delivered.data.attempt == 4 and delivered.data.status_code == 200
    calls = gateway.calls_to("/flaky")
    assert len(calls) == 4
    assert len({call.headers["idempotency-key"] for call in calls}) == 1
    # Retry-After: 1 on the second answer holds the third call back at least that long.
    assert calls[2].at - calls[1].at >= 0.95
    assert all(later.at > earlier.at for earlier, later in itertools.pairwise(calls))

    [notification] = await system.notifications(event.subject)
    [delivery] = notification["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("DELIVERED", 4)
    outcomes = [(a["outcome"], a["status_code"]) for a in notification["attempts"]]
    assert outcomes == [("FAILED", 503), ("FAILED", 429), ("FAILED", 500), ("DELIVERED", 200)]
    assert all(a["latency_ms"] > 0 and a["channel"] == "webhook" for a in notification["attempts"])
    await asyncio.sleep(0.5)
    assert len(gateway.calls_to("/flaky")) == 4


async def test_permanent_refusal_moves_straight_to_the_next_contact(
    notification_system: NotificationSystem,
) -> None:
    system, gateway = notification_system, notification_system.gateway
    gateway.answers["/refuses"] = always(400)
    event = obligation_created("TCG:150626100")
    await system.publish(event)

    [delivered] = await system.wait_for_event(event.subject, "notification.delivered")
    [failed] = system.events_of(event.subject, "notification.failed")
    assert failed.data.status_code == 400 and failed.data.attempt == 1
    assert len(for_incident(gateway.calls_to("/refuses"), event.subject)) == 1  # never retried
    [alert] = for_incident(gateway.calls_to("/fallback"), event.subject)
    assert alert.json()["contact_index"] == 1
    assert delivered.data.contact.endswith("/fallback")

    [notification] = await system.notifications(event.subject)
    assert [(d["status"], d["attempts"]) for d in notification["deliveries"]] == [
        ("FAILED", 1),
        ("DELIVERED", 1),
    ]
    assert notification["contact_index"] == 1


async def test_a_hanging_gateway_holds_up_no_other_alert(
    notification_system: NotificationSystem,
) -> None:
    system, gateway = notification_system, notification_system.gateway
    gateway.answers["/hang"] = hang(10, gateway.closing)
    stuck = obligation_created("SFS:150626100")
    await system.publish(stuck)
    await gateway.wait_for_calls("/hang", 1)

    other = obligation_created("PPS:150626101")  # SMS gateway
    started = time.monotonic()
    await system.publish(other)
    await system.wait_for_event(other.subject, "notification.delivered", timeout=5)
    assert time.monotonic() - started < 2.0
    assert not system.events_of(stuck.subject, "notification.delivered")

    [timed_out] = await system.wait_for_event(stuck.subject, "notification.failed", timeout=5)
    assert timed_out.data.error.startswith("timeout")
    assert 900 <= timed_out.data.latency_ms < 3000  # NOTIFICATION_SEND_TIMEOUT_SECONDS=1


async def test_a_redelivered_directive_never_sends_again(
    notification_system: NotificationSystem,
) -> None:
    system, gateway = notification_system, notification_system.gateway
    event = obligation_created("SFS:150626103")
    # the same record twice (Kafka redelivery) and the same obligation under a new event id
    again = CloudEvent.new("escalation", event.data, event.subject)
    for record in (event, event, again):
        await system.publish(record)

    await system.wait_for_event(event.subject, "notification.delivered")
    await asyncio.sleep(1.0)  # time for a second send, were there one
    assert len(for_incident(gateway.calls_to("/plain"), event.subject)) == 1
    assert len(system.events_of(event.subject, "notification.delivered")) == 1
    assert len(await system.notifications(event.subject)) == 1


async def test_every_channel_delivers_in_its_own_format(
    notification_system: NotificationSystem,
) -> None:
    system, gateway = notification_system, notification_system.gateway
    gateway.answers["/robot/send"] = always(200, {"errcode": 0, "errmsg": "ok"})
    gateway.answers["/cgi-bin/webhook/send"] = always(200, {"errcode": 0, "errmsg": "ok"})
    gateway.answers["/aliyun/"] = always(200, {"Code": "OK", "Message": "OK", "BizId": "1"})
    first = obligation_created("TCG:150626101")  # e-mail
    incident_id = first.data.incident_id
    parties = ["SFS:150626101", "PPS:150626102", "TCG:150626102", "SFS:150626102"]
    events = [first] + [obligation_created(p, incident_id=incident_id) for p in parties]
    for event in events:
        await system.publish(event)

    delivered = await system.wait_for_event(incident_id, "notification.delivered", count=5)
    assert {e.data.channel for e in delivered} == {
        "email",
        "dingtalk",
        "wecom",
        "aliyun_sms",
        "voice",
    }
    by_party = {n["party"]: n for n in await system.notifications(incident_id)}
    ack_links = {
        party: f"http://notification.test/v1/notifications/{n['id']}/ack?token="
        for party, n in by_party.items()
    }
    sent_texts: list[str] = []

    [mail] = system.inbox.to("duty@tcg.example")
    body = mail.message.get_content()
    assert mail.message["Subject"].startswith("【社区矫正突发事件】图克镇")
    assert ack_links["TCG:150626101"] in body
    sent_texts.append(body)

    [robot] = gateway.calls_to("/robot/send")
    timestamp = robot.query["timestamp"]
    digest = hmac.new(
        DINGTALK_SECRET.encode(), f"{timestamp}\n{DINGTALK_SECRET}".encode(), hashlib.sha256
    ).digest()
    raw_sign = dict(part.split("=", 1) for part in robot.raw_query.split("&"))["sign"]
    assert unquote_plus(raw_sign).encode() == base64.b64encode(digest)
    assert robot.query["access_token"] == "tok-sfs"
    assert robot.json()["msgtype"] == "text" and robot.json()["at"] == {"isAtAll": True}
    sent_texts.append(robot.json()["text"]["content"])

    [wecom] = gateway.calls_to("/cgi-bin/webhook/send")
    assert wecom.query == {"key": "k-pps"} and wecom.json()["msgtype"] == "text"
    wecom_text = wecom.json()["text"]["content"]
    # A group chat (`@all`) reads it: category, phase, township, time and the record link only.
    assert "正在实施" in wecom_text and "/incidents/" in wecom_text
    assert "ack" not in wecom_text and "立即出警制止" not in wecom_text
    sent_texts.append(wecom_text)

    [sms] = gateway.calls_to("/aliyun/")
    params = sms.query
    assert sms.headers["authorization"] == sms.acs3_authorization("testId", "testSecret")
    sms_text = json.loads(params["TemplateParam"])["content"]
    assert ack_links["TCG:150626102"] in sms_text and len(sms_text) < 300
    sent_texts.append(sms_text)

    [call] = gateway.calls_to("/voice")
    assert call.json()["to"] == "13900000003"
    assert "http" not in call.json()["text"] and "图克镇" in call.json()["text"]
    sent_texts.append(call.json()["text"])

    for text in sent_texts:
        assert ID_NUMBER not in text and "王某某" not in text
    for text in sent_texts[1:3]:  # group chats: nothing typed by anyone, no names at all
        assert "中心街" not in text and "持刀" not in text and "王" not in text
    for text in sent_texts[3:]:  # short forms: no place, no summary, no names at all
        assert "中心街" not in text and "持刀" not in text and "王" not in text

    codes = {
        n["party"]: (n["attempts"][0]["status_code"], n["attempts"][0]["gateway_code"])
        for n in by_party.values()
    }
    assert codes == {
        "TCG:150626101": (250, None),
        "SFS:150626101": (200, "0"),
        "PPS:150626102": (200, "0"),
        "TCG:150626102": (200, "OK"),
        "SFS:150626102": (200, None),
    }
