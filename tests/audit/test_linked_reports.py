"""R20 in the audit log on the running stack: a merge, a report linked on arrival and the undoing
of the merge, as intake publishes them on incidents.v1, show in the history of both incidents
they name; R12 is judged on the event (the earliest of all its reports, the earliest discovery
any of them states); the investigation report lists every report of the event with its source
and every link with who, when and why.

The events are published on the topic directly, as intake's linking will publish them: this
test does not depend on intake's linking routes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from shared.events import CloudEvent, topics
from shared.events.models import (
    EventData,
    IncidentFacts,
    IncidentLinked,
    IncidentMerged,
    IncidentUnlinked,
    LinkedReport,
    Reporter,
    Subject,
)
from tests.audit.conftest import AuditSystem
from tests.integration.helpers import eventually, report, timeline_with

SFS = "SFS:150626102"
PPS = "PPS:150626102"
PLATFORM = {"party": "PLATFORM", "name": "县公安局指挥中心"}


async def publish(system: AuditSystem, data: EventData, incident_id: uuid.UUID) -> None:
    """Publish an event on incidents.v1 as intake does, keyed by the incident it is about."""
    event = CloudEvent.new("intake", data, incident_id)
    producer = AIOKafkaProducer(bootstrap_servers=system.infra.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.INCIDENTS, value=event.value(), key=event.key, headers=event.headers()
        )
    finally:
        await producer.stop()


def entries_of(timeline: httpx.Response, ce_type: str) -> list[dict[str, Any]]:
    return [entry for entry in timeline.json()["entries"] if entry["ce_type"] == ce_type]


async def test_R20_links_show_on_both_incidents_and_R12_is_judged_on_the_event(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    audit = clients["audit"]
    # The county platform reports first; the 司法所 reports the same event a moment later as
    # an incident of its own, which the banner office merges into the platform's.
    kept = uuid.UUID(await report(clients, category="OTHER", reporter=PLATFORM))
    merged = uuid.UUID(await report(clients, category="OTHER"))
    await timeline_with(audit, str(merged), "incident.reported")
    merge = IncidentMerged(
        incident_id=kept,
        merged_incident_id=merged,
        link_id=uuid.uuid4(),
        party="BLO",
        actor_name="周主任",
        reason="同一对象同一事件，两处报告",
        merged_at=datetime.now(UTC),
    )
    await publish(audit_system, merge, kept)
    # The police station's report arrives later and is linked on arrival; it says the event
    # was discovered three hours ago.
    now = datetime.now(UTC)
    linked = IncidentLinked(
        incident_id=kept,
        link_id=uuid.uuid4(),
        linked_by="SUBJECT_ID",
        linked_at=now,
        report=LinkedReport(
            report_id=uuid.uuid4(),
            reporter=Reporter(party=PPS, name="钱警官"),
            reported_at=now,
            facts=IncidentFacts(
                category="OTHER",
                phase="IN_PROGRESS",
                township_code="150626102",
                township_name="图克镇",
                subjects=(Subject(id="SQJZ-2024-0107", name="王**"),),
                discovered_at=now - timedelta(hours=3),
            ),
        ),
    )
    await publish(audit_system, linked, kept)

    # The merge is in the history of both incidents.
    for incident in (kept, merged):
        timeline = await timeline_with(audit, str(incident), "incident.merged")
        (entry,) = entries_of(timeline, "incident.merged")
        assert entry["event"]["data"]["link_id"] == str(merge.link_id)

    # R12 on the event: the earliest discovery stated (the police station's) against the
    # earliest report (the platform's); the 司法所 reported within the threshold, so it is not
    # suspected for the platform reporting first, and the merged incident is judged on the
    # one it was merged into.
    findings = await eventually(
        lambda: audit.get("/v1/findings", params={"incident_id": str(kept)}),
        lambda response: any(f["rule_id"] == "R12" for f in response.json()["findings"]),
    )
    (concealed,) = [f for f in findings.json()["findings"] if f["rule_id"] == "R12"]
    assert concealed["party"] == PPS
    assert "发现时间系图克镇派出所所报" in concealed["detail"]
    linked_leaf = entries_of(await audit.get(f"/v1/incidents/{kept}/timeline"), "incident.linked")
    assert linked_leaf[0]["index"] in concealed["evidence_log_indexes"]
    of_merged = await audit.get("/v1/findings", params={"incident_id": str(merged)})
    assert not [f for f in of_merged.json()["findings"] if f["rule_id"] == "R12"]

    # The investigation report lists every report of the event and the links.
    text = (
        await audit.get(
            f"/v1/incidents/{kept}/investigation-report",
            params={"format": "markdown"},
            headers={"X-Act-As": "BLO audit:read pii:read"},  # reporters by name
        )
    ).text
    assert "| 公安机关警情平台 | 县公安局指挥中心 | 首报 | 本事件 |" in text, text
    assert f"| 李明 | 首报 | 事件 {str(merged)[:8]} |" in text
    assert "| 钱警官 | 关联报告 | 本事件 |" in text
    assert f"合并（R20）：事件 {str(merged)[:8]}并入事件 {str(kept)[:8]}" in text
    assert "| 周主任 |" in text and "同一对象同一事件，两处报告" in text

    # Undone: the two incidents are separate events again, and both histories say so.
    await publish(
        audit_system,
        IncidentUnlinked(
            incident_id=kept,
            linked_incident_id=merged,
            link_id=merge.link_id,
            was="MERGE",
            party="BLO",
            actor_name="周主任",
            reason="核实为两起事件",
            unlinked_at=datetime.now(UTC),
        ),
        kept,
    )
    for incident in (kept, merged):
        timeline = await timeline_with(audit, str(incident), "incident.unlinked")
        (entry,) = entries_of(timeline, "incident.unlinked")
        assert entry["event"]["data"]["reason"] == "核实为两起事件"
