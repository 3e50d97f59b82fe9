"""Notices of the revised rules, end to end: an update of the incident reaches every party
already alerted about it (R19), an incident gone quiet is told to the BLO once (R9), and the CEO
hears of every commendation and discipline (R15). Each is a notice: delivered once per change
and party whatever redelivers the event, nothing to acknowledge, and a drill's only to drill
contacts (R16)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from shared.events import CloudEvent
from shared.events.models import AccountabilityFinding, FindingReviewed
from shared.settings import Settings
from tests.notification.builders import (
    ID_NUMBER,
    accountability_recorded,
    incident_updated,
    incident_went_quiet,
)
from tests.notification.conftest import NotificationSystem
from tests.notification.loopback import Call

NOTICE_ATTEMPTED = "notification.notice_attempted"


def changed(
    recipients: tuple[str, ...],
    *,
    incident_id: UUID | None = None,
    about: str = "FOLLOW_UP",
    drill: bool = False,
) -> CloudEvent:
    data = incident_updated(recipients, incident_id=incident_id, about=about, drill=drill)
    return CloudEvent.new("escalation", data, data.incident_id)


def republished(event: CloudEvent) -> CloudEvent:
    """The same change published again as a new event (a new event id), as a producer retrying
    after a lost answer would."""
    return CloudEvent.new(event.source, event.data, event.data.incident_id)


def for_incident(calls: list[Call], incident_id: str) -> list[dict[str, Any]]:
    return [call.json() for call in calls if incident_id in call.body.decode()]


async def test_r19_update_reaches_every_party_already_alerted(
    notification_system: NotificationSystem,
) -> None:
    system, gateway = notification_system, notification_system.gateway
    recipients = ("SFS:150626103", "PPS:150626101", "DEC:乌审旗人民法院", "DEPT:无此部门")
    event = changed(recipients)
    incident_id = event.subject
    for again in (event, event, republished(event)):  # one notice per party all the same
        await system.publish(again)
    # The police learn when the incident closes; a later change of the same incident (the
    # same partition, so heard after the repeats) shows the repeats were read and passed over.
    closed = changed(("PPS:150626101",), incident_id=event.data.incident_id, about="CLOSED")
    await system.publish(closed)

    attempts = await system.wait_for_event(incident_id, NOTICE_ATTEMPTED, count=4)
    assert {(a.data.party, a.data.outcome) for a in attempts} == {
        ("SFS:150626103", "DELIVERED"),
        ("PPS:150626101", "DELIVERED"),
        ("DEC:乌审旗人民法院", "DELIVERED"),
    }
    assert {a.data.about for a in attempts} == {"incident.updated"}
    notices = await system.notifications(incident_id)
    assert len(notices) == 4  # three parties told of the follow-up, the police of the closing
    assert {(n["kind"], n["status"], n["obligation_id"]) for n in notices} == {
        ("NOTICE", "INFORMED", None)
    }

    [full] = for_incident(gateway.calls_to("/plain"), incident_id)
    assert full["ack_url"] is None and full["update_id"] == str(event.data.update_id)
    assert full["text"].startswith("【社区矫正突发事件】事件更新：续报")
    assert "王**（身份证150626********1234）" in full["text"]
    assert "王某某" not in full["text"] and ID_NUMBER not in full["text"]
    assert len(for_incident(gateway.calls_to("/court"), incident_id)) == 1

    # The police station's contact is a phone: the SMS form, short and without the summary.
    police = {a.data.notification_id for a in attempts if a.data.party == "PPS:150626101"}
    texts = sorted(
        call.json()["text"]
        for call in gateway.calls_to("/sms")
        if UUID(call.json()["notification_id"]) in police
    )
    assert len(texts) == 2
    assert all(text.startswith("事件更新：图克镇社区矫正对象暴力或自伤自残事件") for text in texts)
    assert any("处置结束" in text for text in texts) and any("续报" in text for text in texts)
    assert not any("持刀" in text or "王" in text or "http" in text for text in texts)
    assert not system.events_of(incident_id, "notification.delivered")  # no alert, no ACK


async def test_r16_an_update_of_a_drill_reaches_only_drill_contacts(
    notification_system: NotificationSystem,
) -> None:
    system, gateway = notification_system, notification_system.gateway
    event = changed(("PPS:150626103", "TCG:150626103"), drill=True)
    incident_id = event.subject
    await system.publish(event)

    attempts = await system.wait_for_event(incident_id, NOTICE_ATTEMPTED, count=2)
    by_party = {a.data.party: a.data for a in attempts}
    assert (by_party["PPS:150626103"].channel, by_party["PPS:150626103"].contact) == (
        "file",
        "演练",
    )
    assert by_party["TCG:150626103"].contact.endswith("/tcg-drill")
    assert all(a.data.drill for a in attempts)
    assert not for_incident(gateway.calls_to("/police-real"), incident_id)
    assert not for_incident(gateway.calls_to("/tcg-real"), incident_id)
    [drill] = for_incident(gateway.calls_to("/tcg-drill"), incident_id)
    assert drill["drill"] is True and "本条为应急演练" in drill["text"]
    lines = (system.work_dir / "alerts.jsonl").read_text("utf-8").splitlines()
    [filed] = [
        notice
        for notice in map(json.loads, lines)
        if notice["incident_id"] == incident_id and notice["party"] == "PPS:150626103"
    ]
    assert filed["drill"] is True and filed["text"].startswith("【演练】")


def went_quiet(incident_id: UUID, last_news_at: datetime) -> CloudEvent:
    return CloudEvent.new(
        "escalation", incident_went_quiet(last_news_at, incident_id=incident_id), incident_id
    )


async def test_r9_went_quiet_tells_the_blo_once(notification_system: NotificationSystem) -> None:
    system, gateway = notification_system, notification_system.gateway
    incident_id = uuid4()
    last_news = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
    event = went_quiet(incident_id, last_news)
    for again in (event, event, republished(event)):
        await system.publish(again)
    # News came, then the incident went quiet again: a new spell, told again.
    later = went_quiet(incident_id, last_news + timedelta(days=10))
    await system.publish(later)

    attempts = await system.wait_for_event(str(incident_id), NOTICE_ATTEMPTED, count=2)
    assert {(a.data.party, a.data.about, a.data.outcome) for a in attempts} == {
        ("BLO", "incident.went_quiet", "DELIVERED")
    }
    notices = await system.notifications(incident_id)
    assert len(notices) == 2
    assert {(n["kind"], n["status"]) for n in notices} == {("NOTICE", "INFORMED")}
    told = for_incident(gateway.calls_to("/walk-a"), str(incident_id))
    assert len(told) == 2 and all(notice["ack_url"] is None for notice in told)
    # The two spells are delivered independently, in whichever order the workers finish.
    spells = sorted(notice["text"] for notice in told)
    assert "图克镇的一起事件自2026-11-20 12:00（北京时间）起7天没有续报" in spells[0]
    assert "图克镇的一起事件自2026-11-30 12:00（北京时间）起7天没有续报" in spells[1]
    # A notice asks nothing: the BLO's next contact is never walked to.
    assert not for_incident(gateway.calls_to("/walk-b"), str(incident_id))


def recorded(incident_id: UUID, document_number: str) -> CloudEvent:
    data = accountability_recorded(incident_id=incident_id, document_number=document_number)
    return CloudEvent.new("audit", data, incident_id)


async def test_r15_ceo_is_informed(notification_system: NotificationSystem) -> None:
    system, gateway = notification_system, notification_system.gateway
    incident_id = uuid4()
    finding = AccountabilityFinding(
        finding_id=uuid4(),
        incident_id=incident_id,
        rule_id="R10",
        party="SFS:150626102",
        kind="LATE",
        detail="报告晚于时限",
    )
    review = FindingReviewed(
        review_id=uuid4(),
        finding_id=finding.finding_id,
        incident_id=incident_id,
        rule_id="R10",
        decision="CONFIRMED",
        reason="核实属实",
        reviewer_party="BJO",
        reviewer="officer-1",
        reviewed_at=datetime.now(UTC),
    )
    first = recorded(incident_id, "乌司发〔2026〕5号")
    second = recorded(incident_id, "乌司发〔2026〕6号")
    for event in (
        CloudEvent.new("audit", finding, incident_id),  # findings and reviews tell nobody
        CloudEvent.new("audit", review, incident_id),
        first,
        first,
        republished(first),
        second,
    ):
        await system.publish(event)

    attempts = await system.wait_for_event(str(incident_id), NOTICE_ATTEMPTED, count=2)
    assert {(a.data.party, a.data.about, a.data.outcome) for a in attempts} == {
        ("CEO", "accountability.recorded", "DELIVERED")
    }
    notices = await system.notifications(incident_id)
    assert len(notices) == 2 and {n["party"] for n in notices} == {"CEO"}
    told = for_incident(gateway.calls_to("/ceo"), str(incident_id))
    assert sorted(notice["record_id"] for notice in told) == sorted(
        str(event.data.record_id) for event in (first, second)
    )
    for notice in told:
        assert notice["title"].startswith("处分记录：图克镇司法所（乌司发〔2026〕")
        assert "人员：张**（图克镇司法所所长）" in notice["text"] and "张三丰" not in notice["text"]
        assert notice["ack_url"] is None


async def test_r15_record_applied_by_the_former_audit_group_is_not_told_again(
    notification_system: NotificationSystem,
) -> None:
    """notification reads audit.v1 in its one group since the group `notification.audit` was
    folded into it: that group starts audit.v1 from the beginning, and what the former group
    applied (its inbox row) is a repeat, not a new record to tell the CEO of."""
    system, gateway = notification_system, notification_system.gateway
    incident_id = uuid4()
    told_before, new = (
        recorded(incident_id, "乌司发〔2026〕7号"),
        recorded(incident_id, "乌司发〔2026〕8号"),
    )
    database = Settings(database_url=system.infra.database_url).plain_database_url
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(
            "INSERT INTO notification.inbox"
            ' (ce_source, ce_id, ce_type, consumer, topic, partition, "offset")'
            " VALUES ($1, $2, $3, 'notification.audit', 'audit.v1', 0, 0)",
            told_before.source,
            told_before.id,
            told_before.type,
        )
    finally:
        await connection.close()
    for event in (told_before, new):  # one incident: one partition, read in this order
        await system.publish(event)

    await system.wait_for_event(str(incident_id), NOTICE_ATTEMPTED)
    told = for_incident(gateway.calls_to("/ceo"), str(incident_id))
    assert [notice["record_id"] for notice in told] == [str(new.data.record_id)]
    assert len(await system.notifications(incident_id)) == 1
