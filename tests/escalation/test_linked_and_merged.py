"""R20 on the running system: another source's report of an open incident's event, a merge of two
incidents and its undoing, as intake publishes them (produced here directly), with deadlines of
seconds: duties fall due and escalate while the test runs, so it asks what R20 decides, not how
far the ladder has climbed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaProducer

from shared.events import CloudEvent, topics
from shared.events.models import (
    ActionRecorded,
    EventData,
    IncidentLinked,
    IncidentMerged,
    IncidentUnlinked,
    LinkedReport,
    NotificationAcknowledged,
    Reporter,
)
from tests.integration.helpers import (
    act,
    eventually,
    find,
    obligations_when,
    report,
    timeline_with,
    violence_report,
)
from tests.integration.test_walking_skeleton import read_topic

TUKE = "150626102"
OPEN = ("PENDING", "MISSED")


async def publish(bootstrap: str, topic: str, data: EventData, source: str = "intake") -> UUID:
    """Produce `data` as `source` would, keyed by its incident; the event's id."""
    event = CloudEvent.new(source, data, data.incident_id)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value=event.value(), key=event.key, headers=event.headers()
        )
    finally:
        await producer.stop()
    return event.id


async def obligations_of(clients: dict[str, Any], incident_id: str) -> dict[str, Any]:
    response = await clients["escalation"].get(f"/v1/incidents/{incident_id}/obligations")
    assert response.status_code == 200, response.text
    return response.json()


def one(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The one duty of a rule, party and action the incident itself gave rise to."""
    [duty] = [o for o in find(body, **fields) if o["escalated_from"] is None]
    return duty


async def alerts_when(
    clients: dict[str, Any], incident_id: str, **fields: Any
) -> list[dict[str, Any]]:
    """The incident's alerts whose fields have the given values, once there is one."""

    async def alerts() -> list[dict[str, Any]]:
        response = await clients["notification"].get(
            "/v1/notifications", params={"incident_id": incident_id}
        )
        assert response.status_code == 200, response.text
        return find({"obligations": response.json()["items"]}, **fields)

    return await eventually(alerts, bool)


def merge(surviving_id: str, merged_id: str, link_id: UUID) -> IncidentMerged:
    """The BLO merges `merged_id` into `surviving_id`, the more severe: no fact of it changes."""
    return IncidentMerged(
        incident_id=uuid.UUID(surviving_id),
        merged_incident_id=uuid.UUID(merged_id),
        link_id=link_id,
        party="BLO",
        actor_name="周局",
        reason="同一事件两次报告",
        merged_at=datetime.now(UTC),
    )


def unmerge(surviving_id: str, merged_id: str, link_id: UUID) -> IncidentUnlinked:
    """The BLO undoes the merge `link_id`."""
    return IncidentUnlinked(
        incident_id=uuid.UUID(surviving_id),
        linked_incident_id=uuid.UUID(merged_id),
        link_id=link_id,
        was="MERGE",
        party="BLO",
        actor_name="周局",
        reason="并非同一事件",
        unlinked_at=datetime.now(UTC),
    )


def updates_of(timeline: Any, about: str) -> list[dict[str, Any]]:
    return [
        entry["event"]["data"]
        for entry in timeline.json()["entries"]
        if entry["ce_type"] == "incident.updated" and entry["event"]["data"]["about"] == about
    ]


def linked_report(
    incident_id: str,
    reporter: Reporter,
    stated: dict[str, Any],
    changes: dict[str, Any] | None = None,
    previous: dict[str, Any] | None = None,
) -> IncidentLinked:
    """Another source's first report of `incident_id`'s event, stating `stated` (a report as
    intake takes it), linked on the subject's id."""
    now = datetime.now(UTC)
    return IncidentLinked(
        incident_id=uuid.UUID(incident_id),
        link_id=uuid.uuid4(),
        linked_by="SUBJECT_ID",
        linked_at=now,
        report=LinkedReport(
            report_id=uuid.uuid4(),
            reporter=reporter,
            reported_at=now,
            facts={
                **{key: stated[key] for key in ("category", "phase", "location", "summary")},
                "township_code": TUKE,
                "township_name": "图克镇",
                "occurred_at": stated["occurred_at"],
                "measures_taken": stated["measures_taken"],
                "subjects": [{"id": "SQJZ-2024-0107", "name": "王**"}],
            },
        ),
        changes=changes or {},
        previous=previous or {},
    )


async def test_R20_a_linked_report_that_raises_the_phase_revises_duties_and_tells_the_alerted(
    fast, fast_system
) -> None:
    infra, _, _ = fast_system
    incident_id = await report(fast, category="VIOLENCE", phase="SIGNS")
    # R5 alerted the township's command group: it must hear of what the other report changed.
    await alerts_when(fast, incident_id, party=f"TCG:{TUKE}")
    police = Reporter(party=f"PPS:{TUKE}", name="张警官")
    linked = linked_report(
        incident_id,
        police,
        violence_report(phase="IN_PROGRESS"),
        changes={"phase": "IN_PROGRESS"},
        previous={"phase": "SIGNS"},
    )
    await publish(infra.kafka_bootstrap_servers, topics.INCIDENTS, linked)
    # The rules run again on the more severe phase: R6's duties, due from the link.
    body = await obligations_when(fast, incident_id, lambda body: find(body, rule_id="R6"))
    r6 = [o for o in find(body, rule_id="R6") if o["escalated_from"] is None]
    assert {(o["party"], o["action"]) for o in r6} >= {
        (f"PPS:{TUKE}", "CALL_POLICE"),
        (f"TCG:{TUKE}", "REPORT"),
    }
    assert all(o["trigger"] == "changed" for o in r6)
    assert "同一事件的另一报告（R20）将事态阶段由「苗头迹象」改为「正在实施」" in r6[0]["why"]
    # The linked report is no new incident: what the first report asked is asked once.
    assert len([o for o in find(body, rule_id="R1") if o["escalated_from"] is None]) == 1
    assert one(body, rule_id="R5", party=f"TCG:{TUKE}", action="REPORT")
    # Still pending, R5's duties no longer apply (missed ones stay missed).
    assert all(
        o["status"] in ("WAIVED", "MISSED")
        for o in find(body, rule_id="R5")
        if o["escalated_from"] is None
    )

    timeline = await timeline_with(fast["audit"], incident_id, "incident.updated")
    [update] = updates_of(timeline, "LINKED")
    assert update["rule_id"] == "R19"
    assert f"TCG:{TUKE}" in update["recipients"]
    assert police.party not in update["recipients"]
    assert "另行报告了同一事件" in update["summary"] and "R20" in update["summary"]
    assert "由「苗头迹象」改为「正在实施」" in update["summary"]


async def test_R20_merge_moves_unique_duties_waives_doubled_and_unlink_restores_them(
    fast, fast_system
) -> None:
    infra, _, _ = fast_system
    # The surviving incident is the more severe (category and phase): the merge changes none
    # of its facts. Both went out of control (R2); only the merged one is of signs (R5).
    surviving_id = await report(fast, category="ABNORMAL_DEATH", phase="OCCURRED")
    merged_id = await report(fast, category="VIOLENCE", phase="SIGNS")
    for incident_id in (surviving_id, merged_id):
        await obligations_when(fast, incident_id, lambda body: find(body, rule_id="R1"))
        await act(fast, incident_id, "UNCONTROLLABLE")
    await obligations_when(fast, surviving_id, lambda body: find(body, rule_id="R2"))
    before = await obligations_when(fast, merged_id, lambda body: find(body, rule_id="R2"))
    township_report = one(before, rule_id="R5", party=f"TCG:{TUKE}", action="REPORT")
    bureau_report = one(before, rule_id="R5", party="BLO", action="REPORT")
    first_response = one(before, rule_id="R1")
    activate_plan = one(before, rule_id="R2", action="ACTIVATE_PLAN")
    [alert] = await alerts_when(fast, merged_id, obligation_id=township_report["id"])
    link_id = uuid.uuid4()
    await publish(
        infra.kafka_bootstrap_servers, topics.INCIDENTS, merge(surviving_id, merged_id, link_id)
    )
    after = await obligations_when(
        fast, merged_id, lambda body: body["merged_into"] == surviving_id
    )
    moved_away = find(after, id=township_report["id"])[0]
    assert moved_away["status"] == "WAIVED" and moved_away["moved_to"]
    assert "R20" in moved_away["closed_reason"]
    doubled = find(after, id=first_response["id"])[0]
    assert doubled["status"] == "WAIVED" and doubled["moved_to"] is None
    assert (
        "同一职责重复（R20）" in doubled["closed_reason"]
        and surviving_id in doubled["closed_reason"]
    )
    assert find(after, id=activate_plan["id"])[0]["status"] == "WAIVED"
    assert find(after, id=activate_plan["id"])[0]["moved_to"] is None
    assert not [o for o in after["obligations"] if o["status"] == "PENDING"]

    surviving = await obligations_of(fast, surviving_id)
    [moved_here] = find(surviving, id=moved_away["moved_to"])
    assert moved_here["moved_from"] == township_report["id"]
    for same in ("rule_id", "party", "action", "owner", "deadline_name", "due_at", "notify"):
        assert moved_here[same] == township_report[same], same
    assert merged_id in moved_here["why"] and "R20" in moved_here["why"]
    assert len([o for o in find(surviving, rule_id="R1") if o["escalated_from"] is None]) == 1

    # The township's alert carries on for the moved duty: never a second alert.
    [carried] = await alerts_when(fast, surviving_id, obligation_id=moved_here["id"])
    assert carried["id"] == alert["id"] and carried["status"] != "WITHDRAWN"
    assert carried["incident_id"] == surviving_id
    leftover = (
        await fast["notification"].get("/v1/notifications", params={"incident_id": merged_id})
    ).json()["items"]
    assert not [a for a in leftover if a["obligation_id"] == township_report["id"]]

    # An acknowledgement of the alert under the duty's old id meets the duty where it lives.
    acknowledged = NotificationAcknowledged(
        notification_id=uuid.UUID(alert["id"]),
        incident_id=uuid.UUID(merged_id),
        obligation_id=uuid.UUID(township_report["id"]),
        party=township_report["party"],
        channel="webhook",
        contact="值班室",
        acknowledged_at=datetime.now(UTC),
    )
    ack_id = await publish(
        infra.kafka_bootstrap_servers, topics.NOTIFICATIONS, acknowledged, "notification"
    )
    surviving = await obligations_when(
        fast,
        surviving_id,
        lambda body: find(body, id=moved_here["id"], met_by_event_id=str(ack_id)),
    )
    assert find(surviving, id=moved_here["id"])[0]["status"] in ("MET", "MET_LATE")
    [moved_bureau] = find(surviving, moved_from=bureau_report["id"])
    assert moved_bureau["status"] in OPEN

    # Undone: what is still open moves back, the doubled duty is asked again, met stays met.
    await publish(
        infra.kafka_bootstrap_servers, topics.INCIDENTS, unmerge(surviving_id, merged_id, link_id)
    )
    restored = await obligations_when(fast, merged_id, lambda body: body["merged_into"] is None)
    [back] = find(restored, moved_from=moved_bureau["id"])
    assert (back["rule_id"], back["party"], back["action"]) == ("R5", "BLO", "REPORT")
    assert back["status"] in OPEN
    [again] = find(restored, moved_from=first_response["id"])
    assert (again["rule_id"], again["action"]) == ("R1", "START_FIRST_RESPONSE")
    assert again["status"] in OPEN
    assert not find(restored, moved_from=moved_here["id"])  # met on the surviving incident
    surviving = await obligations_of(fast, surviving_id)
    assert find(surviving, id=moved_here["id"])[0]["status"] in ("MET", "MET_LATE")
    left = find(surviving, id=moved_bureau["id"])[0]
    assert left["status"] == "WAIVED" and left["moved_to"] == back["id"]
    # A doubled duty given back is alerted again (its alert was withdrawn when it was waived,
    # unless it had ended already: then that alert stands for it).
    [reported_again] = find(restored, moved_from=activate_plan["id"])
    assert reported_again["status"] in OPEN and reported_again["notify"]
    await alerts_when(fast, merged_id, obligation_id=reported_again["id"])
    timeline = await timeline_with(fast["audit"], surviving_id, "incident.updated", at_least=2)
    assert updates_of(timeline, "MERGED") and updates_of(timeline, "UNLINKED")


async def test_R20_a_linked_report_of_the_township_meets_its_written_report_and_doubles_none(
    fast, fast_system
) -> None:
    infra, _, _ = fast_system
    # The police reported first; the 司法所's own report of the same event comes second.
    incident_id = await report(
        fast, reporter={"party": f"PPS:{TUKE}", "name": "张警官", "phone": "13900000009"}
    )
    before = await obligations_when(fast, incident_id, lambda body: find(body, rule_id="R6"))
    written = one(before, rule_id="R6", action="FULL_WRITTEN_REPORT")
    township = Reporter(party=f"SFS:{TUKE}", name="李明")
    linked = linked_report(incident_id, township, violence_report())
    link_event = await publish(infra.kafka_bootstrap_servers, topics.INCIDENTS, linked)
    # Its report states the facts and leaves none out: the written report R6 asks of it.
    body = await obligations_when(
        fast,
        incident_id,
        lambda body: find(body, id=written["id"], met_by_event_id=str(link_event)),
    )
    assert find(body, id=written["id"])[0]["status"] in ("MET", "MET_LATE")
    # Nothing the first report asked is asked again, and nothing is new (the daily follow-up
    # recurs once met: R9's own rhythm).
    assert not find(body, trigger="changed")
    for duty in before["obligations"]:
        if duty["escalated_from"] is None and duty["action"] != "FOLLOW_UP_REPORT":
            one(body, rule_id=duty["rule_id"], party=duty["party"], action=duty["action"])


async def test_R20_a_report_linked_to_an_incident_escalation_never_saw_is_dead_lettered(
    fast, fast_system
) -> None:
    infra, _, _ = fast_system
    unknown = str(uuid.uuid4())
    linked = linked_report(unknown, Reporter(party=f"SFS:{TUKE}", name="李明"), violence_report())
    await publish(infra.kafka_bootstrap_servers, topics.INCIDENTS, linked)
    dead = await eventually(
        lambda: read_topic(infra.kafka_bootstrap_servers, "incidents.v1.dlq", 1, 2.0),
        lambda records: any(record.key == unknown.encode() for record in records),
    )
    [letter] = [record for record in dead if record.key == unknown.encode()]
    assert b"link to unknown incident" in dict(letter.headers)["dlq_reason"]


async def test_R20_a_merged_incident_rests_until_the_merge_is_undone(fast, fast_system) -> None:
    infra, _, _ = fast_system
    surviving_id = await report(fast, category="VIOLENCE", phase="IN_PROGRESS")
    merged_id = await report(fast, category="OTHER", phase="OCCURRED")
    await obligations_when(fast, surviving_id, lambda body: find(body, rule_id="R1"))
    await obligations_when(fast, merged_id, lambda body: find(body, rule_id="R1"))
    link_id = uuid.uuid4()
    await publish(
        infra.kafka_bootstrap_servers, topics.INCIDENTS, merge(surviving_id, merged_id, link_id)
    )
    await obligations_when(fast, merged_id, lambda body: body["merged_into"] == surviving_id)

    # Duties on the merged incident (an action intake should have refused, produced here as if
    # it had not), and the same on the surviving one, due a little later.
    def r2(body: dict[str, Any]) -> list[dict[str, Any]]:
        return [o for o in find(body, rule_id="R2") if o["escalated_from"] is None]

    for incident_id in (merged_id, surviving_id):
        now = datetime.now(UTC)
        out_of_control = ActionRecorded(
            incident_id=uuid.UUID(incident_id),
            action_id=uuid.uuid4(),
            action="UNCONTROLLABLE",
            party=f"SFS:{TUKE}",
            actor_name="李明",
            occurred_at=now,
            recorded_at=now,
        )
        await publish(infra.kafka_bootstrap_servers, topics.INCIDENTS, out_of_control)
        await obligations_when(fast, incident_id, r2)
    # The deadline worker has passed the surviving incident's due times, and so the merged
    # one's, which came due first: those rest.
    await obligations_when(
        fast, surviving_id, lambda body: {o["status"] for o in r2(body)} == {"MISSED"}
    )
    resting = r2(await obligations_of(fast, merged_id))
    assert resting and {o["status"] for o in resting} == {"PENDING"}

    await publish(
        infra.kafka_bootstrap_servers, topics.INCIDENTS, unmerge(surviving_id, merged_id, link_id)
    )
    # On its own again, its deadlines fire.
    await obligations_when(
        fast, merged_id, lambda body: {o["status"] for o in r2(body)} == {"MISSED"}
    )
