"""Durable deadlines, rule timers and the escalation ladder, with deadlines of seconds."""

from __future__ import annotations

import asyncio
import signal
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.events import CloudEvent
from shared.events.models import NotificationAcknowledged, NotificationUnacknowledged
from tests.integration.helpers import (
    act,
    eventually,
    find,
    obligations_when,
    report,
    timeline_with,
)

TUKE = "150626102"


async def publish(bootstrap: str, *events: CloudEvent) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                "notifications.v1", value=event.value(), key=event.key, headers=event.headers()
            )
    finally:
        await producer.stop()


async def test_missed_deadline_is_published_and_moves_up_the_ladder_to_the_top(fast) -> None:
    incident_id = await report(fast, category="OTHER", phase="OCCURRED")
    r1 = await obligations_when(fast, incident_id, lambda body: find(body, rule_id="R1"))
    first = find(r1, rule_id="R1")[0]

    def chain(body: dict) -> list[dict[str, Any]]:
        """R1's obligation and whoever supervised it, one rung after the other."""
        links = find(body, id=first["id"])
        while escalated := find(body, escalated_from=links[-1]["id"]):
            links.append(escalated[0])
        return links

    # R1 missed (2 s) → TCG supervises (2 s) → missed → BLO supervises → missed → the top.
    done = await obligations_when(
        fast, incident_id, lambda body: [o["status"] for o in chain(body)] == ["MISSED"] * 3
    )
    links = chain(done)
    assert [(o["party"], o["action"]) for o in links] == [
        (f"SFS:{TUKE}", "START_FIRST_RESPONSE"),
        (f"TCG:{TUKE}", "SUPERVISE"),
        ("BLO", "SUPERVISE"),
    ]
    assert "按升级梯次由上一级督办" in links[2]["why"]
    assert links[0]["closed_reason"] == "逾期，升级至图克镇社区矫正突发事件应急处置指挥小组"
    assert links[2]["closed_reason"] == "逾期"  # nobody above BLO

    timeline = await timeline_with(fast["audit"], incident_id, "deadline.missed", at_least=3)
    missed = [e for e in timeline.json()["entries"] if e["ce_type"] == "deadline.missed"]
    by_obligation = {e["event"]["data"]["obligation_id"]: e["event"]["data"] for e in missed}
    assert by_obligation[first["id"]]["escalated_to"] == f"TCG:{TUKE}"
    assert by_obligation[first["id"]]["rule_id"] == "R1"


async def test_R4_search_window_passing_without_found_escalates(fast) -> None:
    incident_id = await report(fast, category="ABSCONDED", phase="OCCURRED")
    await act(fast, incident_id, "SEARCH_STARTED")
    body = await obligations_when(fast, incident_id, lambda body: find(body, rule_id="R4"))
    r4 = find(body, rule_id="R4")
    assert {(o["party"], o["action"]) for o in r4} == {
        (f"TCG:{TUKE}", "REPORT"),
        ("BLO", "REPORT"),
        (f"PPS:{TUKE}", "WRITTEN_NOTICE"),
        (f"SFS:{TUKE}", "ASSIST_POLICE_SEARCH"),
    }
    assert {o["trigger"] for o in r4} == {"timer:SEARCH_WINDOW"}
    assert "查找时限已过仍未找到" in r4[0]["why"]
    assert body["status"] == "ESCALATED"
    # A SEARCH_FAILED recorded afterwards does not fire R4 a second time.
    await act(fast, incident_id, "SEARCH_FAILED")
    await asyncio.sleep(1.0)
    again = (await fast["escalation"].get(f"/v1/incidents/{incident_id}/obligations")).json()
    assert len(find(again, rule_id="R4", action="WRITTEN_NOTICE")) == 1


async def test_found_in_time_cancels_the_search_window(fast) -> None:
    incident_id = await report(fast, category="ABSCONDED", phase="OCCURRED")
    await act(fast, incident_id, "SEARCH_STARTED")
    await act(fast, incident_id, "FOUND")
    await asyncio.sleep(3.0)  # past the 2 s window
    body = (await fast["escalation"].get(f"/v1/incidents/{incident_id}/obligations")).json()
    assert not find(body, rule_id="R4")
    assert body["status"] == "CONTROLLED"


async def test_R9_follow_ups_keep_coming_due_until_closed(fast) -> None:
    incident_id = await report(fast, category="OTHER", phase="OCCURRED")
    body = await obligations_when(
        fast,
        incident_id,
        lambda body: len(find(body, rule_id="R9", action="FOLLOW_UP_REPORT")) >= 2,
    )
    follow_ups = find(body, rule_id="R9", action="FOLLOW_UP_REPORT")
    assert follow_ups[0]["status"] == "MISSED"
    assert follow_ups[1]["trigger"] == "recurs:FOLLOW_UP_REPORT"
    for action in ("FIRST_RESPONSE_STARTED", "CONTROLLED", "CLOSED"):
        await act(fast, incident_id, action)
    closed = await obligations_when(fast, incident_id, lambda body: body["status"] == "CLOSED")
    await asyncio.sleep(4.0)  # longer than FOLLOW_UP: nothing new may fall due once closed
    after = (await fast["escalation"].get(f"/v1/incidents/{incident_id}/obligations")).json()
    pending_r9 = find(after, rule_id="R9", status="PENDING")
    assert not pending_r9
    assert len(find(after, rule_id="R9")) == len(find(closed, rule_id="R9"))


async def test_acknowledgement_meets_a_report_obligation(fast, fast_system) -> None:
    infra, _, _ = fast_system
    incident_id = await report(fast)
    body = await obligations_when(fast, incident_id, lambda body: find(body, action="REPORT"))
    to_township = find(body, action="REPORT", party=f"TCG:{TUKE}")[0]
    ack = NotificationAcknowledged(
        notification_id=uuid.uuid4(),
        incident_id=uuid.UUID(incident_id),
        obligation_id=uuid.UUID(to_township["id"]),
        party=f"TCG:{TUKE}",
        channel="webhook",
        contact="值班室",
        acknowledged_at=datetime.now(UTC),
    )
    acknowledged = CloudEvent.new("notification", ack, incident_id)
    await publish(infra.kafka_bootstrap_servers, acknowledged)
    # Met in time, or late (R10) when this busy machine let its seconds-long deadline pass
    # first: either way the acknowledgement is what met it.
    body = await obligations_when(
        fast,
        incident_id,
        lambda body: find(body, id=to_township["id"], met_by_event_id=str(acknowledged.id)),
    )
    assert find(body, id=to_township["id"])[0]["status"] in ("MET", "MET_LATE")


async def test_unacknowledged_alert_moves_up_the_ladder(fast, fast_system) -> None:
    infra, _, _ = fast_system
    incident_id = await report(fast)
    body = await obligations_when(fast, incident_id, lambda body: find(body, action="REPORT"))
    to_township = find(body, action="REPORT", party=f"TCG:{TUKE}")[0]
    gave_up = NotificationUnacknowledged(
        notification_id=uuid.uuid4(),
        incident_id=uuid.UUID(incident_id),
        obligation_id=uuid.UUID(to_township["id"]),
        party=f"TCG:{TUKE}",
        contacts_tried=2,
        given_up_at=datetime.now(UTC),
    )
    await publish(
        infra.kafka_bootstrap_servers, CloudEvent.new("notification", gave_up, incident_id)
    )
    body = await obligations_when(
        fast,
        incident_id,
        lambda body: any(o["escalated_from"] == to_township["id"] for o in body["obligations"]),
    )
    [supervisor] = [o for o in body["obligations"] if o["escalated_from"] == to_township["id"]]
    assert supervisor["party"] == "BLO"  # the township did not answer: the banner takes it up
    # One supervision per duty, whichever cause comes first: on a busy machine the duty's
    # seconds-long deadline may pass before the unanswered alert is heard of.
    if supervisor["trigger"].startswith("unacknowledged"):
        assert "指挥小组未确认告警" in supervisor["why"]
    else:
        assert "指挥小组逾期未办" in supervisor["why"]


async def test_pending_deadlines_survive_a_killed_service_and_fire_once(fast, fast_system) -> None:
    _, processes, _ = fast_system
    incident_id = await report(fast, category="OTHER", phase="OCCURRED")
    body = await obligations_when(fast, incident_id, lambda body: find(body, rule_id="R1"))
    r1 = find(body, rule_id="R1")[0]
    assert r1["status"] == "PENDING"

    processes.stop_one("escalation", signal.SIGKILL)
    await asyncio.sleep(3.0)  # R1 (2 s) falls due while nobody watches
    processes.start_one("escalation")
    await processes.wait_ready("escalation")

    body = await obligations_when(
        fast, incident_id, lambda body: find(body, id=r1["id"], status="MISSED")
    )
    await asyncio.sleep(1.0)
    timeline = await timeline_with(fast["audit"], incident_id, "deadline.missed")
    missed_r1 = [
        e
        for e in timeline.json()["entries"]
        if e["ce_type"] == "deadline.missed" and e["event"]["data"]["obligation_id"] == r1["id"]
    ]
    assert len(missed_r1) == 1


async def test_R14_a_late_investigation_report_goes_up_to_the_banner(fast) -> None:
    """R14's duty lives on a closed incident: missed, the BJO → BLO step of the ladder fires."""
    incident_id = await report(fast, category="OTHER", phase="OCCURRED")
    for action in ("FIRST_RESPONSE_STARTED", "CONTROLLED", "CLOSED"):
        await act(fast, incident_id, action)

    def supervised_investigation(body: dict) -> list[dict[str, Any]]:
        investigation = find(body, rule_id="R14", action="INVESTIGATION_REPORT")
        return investigation and find(body, escalated_from=investigation[0]["id"])

    body = await obligations_when(fast, incident_id, supervised_investigation)
    investigation = find(body, rule_id="R14", action="INVESTIGATION_REPORT")[0]
    assert investigation["status"] == "MISSED"
    assert investigation["closed_reason"] == "逾期，升级至旗社区矫正工作领导小组办公室"
    (supervisor,) = supervised_investigation(body)
    assert (supervisor["party"], supervisor["action"], supervisor["rule_id"]) == (
        "BLO",
        "SUPERVISE",
        "R14",
    )
    assert body["status"] == "CLOSED"


async def test_R10_work_done_after_it_was_missed_is_met_late_and_escalation_stands_down(
    fast,
) -> None:
    """R1 missed and supervised by the TCG; the first response is then recorded: R1 becomes
    MET_LATE and every supervision it caused is waived ("原事项已办结") instead of climbing."""
    incident_id = await report(fast, category="OTHER", phase="OCCURRED")

    def chain(body: dict) -> list[dict[str, Any]]:
        """R1's obligation and whoever supervised it, one rung after the other."""
        links = find(body, rule_id="R1", action="START_FIRST_RESPONSE")[:1]
        while links and (escalated := find(body, escalated_from=links[-1]["id"])):
            links.append(escalated[0])
        return links

    await obligations_when(fast, incident_id, lambda body: len(chain(body)) >= 2)
    await act(fast, incident_id, "FIRST_RESPONSE_STARTED")
    body = await obligations_when(
        fast,
        incident_id,
        lambda body: (
            chain(body)[0]["status"] == "MET_LATE"
            and all(link["status"] != "PENDING" for link in chain(body))
        ),
    )
    first, *supervisions = chain(body)
    assert first["status"] == "MET_LATE"
    waived = [link for link in supervisions if link["status"] == "WAIVED"]
    assert waived, supervisions  # at least the rung pending when the work was recorded
    assert {link["closed_reason"] for link in waived} == {"原事项已办结"}
    # Nothing climbs any more: the waived rung has no supervisor of its own.
    assert not find(body, escalated_from=waived[0]["id"])
    # ... and its alert stops walking the supervisor's contacts, saying why.
    waived_ids = {link["id"] for link in waived}

    async def alerts() -> list[dict[str, Any]]:
        response = await fast["notification"].get(
            "/v1/notifications", params={"incident_id": incident_id}
        )
        assert response.status_code == 200, response.text
        return [row for row in response.json()["items"] if row["obligation_id"] in waived_ids]

    stopped = await eventually(
        alerts, lambda rows: bool(rows) and all(row["status"] == "WITHDRAWN" for row in rows)
    )
    assert {row["withdrawn_reason"] for row in stopped} == {"义务已免除：原事项已办结"}


async def test_the_ladder_goes_up_from_the_party_once_per_duty_never_to_itself_or_down(
    fast, fast_system
) -> None:
    """A duty to report to the TCG is supervised by the BLO (it used to "escalate to the TCG",
    itself); one to report to the BLO has nobody above (it used to go down to the TCG); an
    unacknowledged alert and a missed deadline of the same duty give one supervision, not two."""
    infra, _, _ = fast_system
    incident_id = await report(fast)
    body = await obligations_when(fast, incident_id, lambda body: find(body, action="REPORT"))
    to_township = find(body, action="REPORT", party=f"TCG:{TUKE}")[0]
    to_banner = find(body, action="REPORT", party="BLO")[0]
    gave_up = NotificationUnacknowledged(
        notification_id=uuid.uuid4(),
        incident_id=uuid.UUID(incident_id),
        obligation_id=uuid.UUID(to_township["id"]),
        party=f"TCG:{TUKE}",
        contacts_tried=2,
        given_up_at=datetime.now(UTC),
    )
    await publish(
        infra.kafka_bootstrap_servers, CloudEvent.new("notification", gave_up, incident_id)
    )
    body = await obligations_when(
        fast,
        incident_id,
        lambda body: (
            find(body, id=to_township["id"], status="MISSED")
            and find(body, id=to_banner["id"], status="MISSED")
            and find(body, escalated_from=to_township["id"])
        ),
    )
    (supervisor,) = find(body, escalated_from=to_township["id"])
    assert (supervisor["party"], supervisor["action"]) == ("BLO", "SUPERVISE")
    assert not find(body, escalated_from=to_banner["id"])
    assert find(body, id=to_banner["id"])[0]["closed_reason"] == "逾期"


async def test_supervisions_of_one_incident_reach_a_rung_as_one_alert(fast) -> None:
    """R1's first response, R6's scene and police call all missed at once: the TCG supervises
    three items and is alerted once; the others join that alert and are met with it."""
    incident_id = await report(fast)
    immediate = {"START_FIRST_RESPONSE", "GO_ON_SCENE", "CALL_POLICE"}

    def supervisions(body: dict) -> list[dict[str, Any]]:
        items = {o["id"] for o in body["obligations"] if o["action"] in immediate}
        return [
            o
            for o in find(body, party=f"TCG:{TUKE}", action="SUPERVISE")
            if o["escalated_from"] in items
        ]

    body = await obligations_when(fast, incident_id, lambda body: len(supervisions(body)) == 3)
    alerted = [o for o in supervisions(body) if o["notify"]]
    joined = [o for o in supervisions(body) if not o["notify"]]
    assert len(alerted) == 1 and len(joined) == 2
    assert all("本项并入其中，不另行告警" in o["why"] for o in joined)


async def test_R9_a_missed_follow_up_stays_missed_when_the_next_one_is_filed(fast) -> None:
    """Late work meets a missed duty late (R10), but not a missed recurring one: the 续报 meets
    the follow-up now due, and yesterday's omission stays on record."""
    incident_id = await report(fast, category="OTHER", phase="OCCURRED")
    body = await obligations_when(
        fast,
        incident_id,
        lambda body: len(find(body, rule_id="R9", action="FOLLOW_UP_REPORT")) >= 2,
    )
    missed = find(body, rule_id="R9", action="FOLLOW_UP_REPORT")[0]
    assert missed["status"] == "MISSED"
    response = await fast["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "FOLLOW_UP",
            "reporter": {"party": f"SFS:{TUKE}", "name": "李明"},
            "text": "续报：情况稳定。",
        },
    )
    assert response.status_code == 201, response.text

    # The follow-up due when it arrives is met (a later one, should the next have lapsed too;
    # late, should this busy machine let its seconds-long deadline pass on the way).
    def met(body: dict) -> list[dict[str, Any]]:
        return [
            o
            for o in find(body, rule_id="R9")
            if o["status"] in ("MET", "MET_LATE") and o["id"] != missed["id"]
        ]

    body = await obligations_when(fast, incident_id, met)
    assert find(body, id=missed["id"])[0]["status"] == "MISSED"
    assert len(met(body)) == 1
