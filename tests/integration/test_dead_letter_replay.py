"""A dead letter replayed after its cause is fixed is applied, once; a record that is not
invalid, only newer than its reader, is applied and never dead-lettered."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaProducer

from shared.dlq import replay
from shared.events import CloudEvent, topics
from shared.events.models import ActionRecorded
from shared.events.topics import dead_letter_topic
from shared.settings import Settings
from tests.integration.helpers import eventually, obligations_when, reported_event, timeline_with
from tests.integration.test_walking_skeleton import read_topic
from tools.devrun import ServiceProcesses
from tools.localinfra import Infrastructure


async def test_an_action_dead_lettered_before_its_incident_is_applied_on_replay(
    infra: Infrastructure,
    infra_settings: Settings,
    system: ServiceProcesses,
    clients: dict[str, httpx.AsyncClient],
) -> None:
    reported = reported_event()
    now = datetime.now(UTC)
    early_action = CloudEvent.new(
        "intake",
        ActionRecorded(
            incident_id=uuid.UUID(reported.subject),
            action_id=uuid.uuid4(),
            action="FIRST_RESPONSE_STARTED",
            party="SFS:150626102",
            actor_name="李明",
            occurred_at=now,
            recorded_at=now,
        ),
        reported.subject,
    )
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        send = producer.send_and_wait
        await send(
            topics.INCIDENTS, early_action.value(), early_action.key, headers=early_action.headers()
        )
        dead = await eventually(
            lambda: read_topic(infra.kafka_bootstrap_servers, "incidents.v1.dlq", 1, 2.0),
            lambda records: any(r.key == early_action.key for r in records),
        )
        letter = next(r for r in dead if r.key == early_action.key)
        assert b"unknown incident" in dict(letter.headers)["dlq_reason"]
        await send(topics.INCIDENTS, reported.value(), reported.key, headers=reported.headers())
    finally:
        await producer.stop()
    await obligations_when(clients, reported.subject, lambda body: body["status"] == "REPORTED")

    listed = await replay(
        infra_settings, topics.INCIDENTS, "escalation.incidents", dry_run=True, idle_seconds=1.0
    )
    assert listed >= 1
    replayed = await replay(
        infra_settings, topics.INCIDENTS, "escalation.incidents", dry_run=False, idle_seconds=1.0
    )
    assert replayed >= 1
    body = await obligations_when(
        clients, reported.subject, lambda body: body["status"] == "RESPONDING"
    )
    met = [o for o in body["obligations"] if o["status"] == "MET"]
    assert [o["rule_id"] for o in met] == ["R1"]
    # The replayer's offsets are committed: a second run finds nothing new.
    assert (
        await replay(
            infra_settings,
            topics.INCIDENTS,
            "escalation.incidents",
            dry_run=False,
            idle_seconds=1.0,
        )
        == 0
    )


async def test_replaying_one_consumers_dead_letters_leaves_anothers_for_their_own_replay(
    infra: Infrastructure, infra_settings: Settings, system: ServiceProcesses
) -> None:
    """Issue: the replayer's offsets were one group per topic, so replaying escalation's dead
    letters committed past audit's, which a later replay for audit never saw."""
    letters = {consumer: reported_event() for consumer in ("escalation.incidents", "audit.log")}
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for consumer, event in letters.items():
            await producer.send_and_wait(
                dead_letter_topic(topics.INCIDENTS),
                event.value(),
                event.key,
                headers=[
                    *event.headers(),
                    ("dlq_consumer", consumer.encode()),
                    ("dlq_reason", b"a cause since fixed"),
                ],
            )
    finally:
        await producer.stop()
    replayed = await replay(
        infra_settings, topics.INCIDENTS, "escalation.incidents", dry_run=False, idle_seconds=1.0
    )
    assert replayed >= 1
    audit_letters = await replay(
        infra_settings, topics.INCIDENTS, "audit.log", dry_run=True, idle_seconds=1.0
    )
    assert audit_letters >= 1


async def test_a_record_with_fields_of_a_later_version_is_applied_not_dead_lettered(
    infra: Infrastructure,
    system: ServiceProcesses,
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """Tolerant readers: a producer upgraded before its subscribers adds optional fields (at the
    top and nested); escalation and audit apply the record (a record is applied or dead-lettered,
    never both) and audit keeps it as written."""
    reported = reported_event()
    payload = json.loads(reported.value())
    payload["escort_unit"] = "乌审旗公安局"
    payload["facts"]["weather"] = "大风"
    payload["facts"]["subjects"][0]["nickname"] = "老王"
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.INCIDENTS,
            json.dumps(payload, ensure_ascii=False).encode(),
            reported.key,
            headers=reported.headers(),
        )
    finally:
        await producer.stop()
    body = await obligations_when(clients, reported.subject, lambda body: body["obligations"])
    assert body["status"] == "REPORTED"
    assert "R1" in {obligation["rule_id"] for obligation in body["obligations"]}
    timeline = await timeline_with(clients["audit"], reported.subject, "incident.reported")
    [entry] = [e for e in timeline.json()["entries"] if e["ce_type"] == "incident.reported"]
    assert entry["ce_id"] == str(reported.id)
    assert "escort_unit" in json.dumps(entry["event"], ensure_ascii=False)
