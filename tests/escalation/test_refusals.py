"""An action the lifecycle refuses only once it is processed (a race intake could not see)
is published as `action.rejected` naming the party that recorded it, to be told."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from shared.events import CloudEvent, topics
from shared.events.models import ActionRecorded
from tests.integration.helpers import find, obligations_when, report, timeline_with


async def test_a_refused_action_names_who_recorded_it_and_when(fast, fast_system) -> None:
    infra, _, _ = fast_system
    incident_id = await report(fast, category="OTHER", phase="OCCURRED")
    # Escalation knows the incident (its report reached it before the action we produce).
    await obligations_when(fast, incident_id, lambda body: find(body, rule_id="R1"))
    recorded_at = datetime.now(UTC)
    # Recorded as if intake had seen the incident closed already: the investigation report
    # of an incident still open is refused by the lifecycle, not at the door.
    recorded = ActionRecorded(
        incident_id=uuid.UUID(incident_id),
        action_id=uuid.uuid4(),
        action="INVESTIGATION_REPORT_FILED",
        party="BJO",
        actor_name="赵强",
        occurred_at=recorded_at,
        recorded_at=recorded_at,
    )
    event = CloudEvent.new("intake", recorded, recorded.incident_id)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.INCIDENTS, value=event.value(), key=event.key, headers=event.headers()
        )
    finally:
        await producer.stop()

    timeline = await timeline_with(fast["audit"], incident_id, "action.rejected")
    [rejected] = [
        entry["event"]["data"]
        for entry in timeline.json()["entries"]
        if entry["ce_type"] == "action.rejected"
    ]
    assert rejected["action_id"] == str(recorded.action_id)
    assert rejected["party"] == "BJO"
    assert datetime.fromisoformat(rejected["recorded_at"]) == recorded_at
    assert rejected["reason"]
