"""The same event delivered twice changes nothing; outbox order; append-only audit log."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared import messaging
from shared.db import create_engine
from shared.events import CloudEvent, topics
from shared.events.models import IncidentReported
from shared.kafka import EventConsumer, HandlerTable, RecordPosition, create_producer
from shared.messaging import Inbox, OutboxRelay
from shared.settings import Settings
from tests.integration.helpers import eventually, reported_event, timeline_with
from tests.support import WebhookSink
from tools.devrun import ServiceProcesses
from tools.localinfra import Infrastructure


async def test_same_event_delivered_twice_changes_nothing(
    infra: Infrastructure,
    system: ServiceProcesses,
    clients: dict[str, httpx.AsyncClient],
    webhook_sink: WebhookSink,
) -> None:
    event = reported_event()
    incident_id = event.subject
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(
                topics.INCIDENTS, value=event.value(), key=event.key, headers=event.headers()
            )
    finally:
        await producer.stop()

    # R6 alerts the police, the township and the banner; R7 asks the 司法所 for the missing
    # elements (time, persons involved, measures taken).
    alerted = {"PPS:150626102", "TCG:150626102", "BLO", "SFS:150626102"}
    await webhook_sink.wait_for(incident_id, alerted)
    await timeline_with(
        clients["audit"],
        incident_id,
        "notification.delivered",
        at_least=4,
        also={"obligation.created": 8},
    )
    await asyncio.sleep(1.0)  # let a second application, were there one, land too
    timeline = await clients["audit"].get(f"/v1/incidents/{incident_id}/timeline")
    types = [entry["ce_type"] for entry in timeline.json()["entries"]]
    assert types.count("incident.reported") == 1
    assert types.count("obligation.created") == 8  # R1, R6 x5, R7, R9
    assert types.count("notification.delivered") == 4
    obligations = await clients["escalation"].get(f"/v1/incidents/{incident_id}/obligations")
    assert len(obligations.json()["obligations"]) == 8
    assert len(webhook_sink.for_incident(incident_id)) == 4
    head = await clients["audit"].get("/v1/log/verify")
    assert head.json()["first_broken_index"] is None


async def test_outbox_relay_publishes_in_order_and_marks_sent(
    infra_settings: Settings, scratch_schema
) -> None:
    sessions, outbox, _ = scratch_schema
    topic = f"scratch.{uuid.uuid4().hex[:8]}"
    events = [reported_event() for _ in range(3)]
    # Ten events of one incident, staged across several transactions.
    incident = events[0]
    staged = [
        CloudEvent(
            uuid.uuid4(), "intake", incident.type, incident.subject, incident.time, incident.data
        )
        for _ in range(10)
    ]
    for chunk in (staged[:4], staged[4:7], staged[7:]):
        async with sessions() as session, session.begin():
            await outbox.add(session, *chunk)

    producer = create_producer(infra_settings, "test-relay")
    await producer.start()
    sent_to: list[str] = []
    original_send = producer.send

    async def send_to_scratch(_topic, **kwargs):
        sent_to.append(_topic)
        return await original_send(topic, **kwargs)

    producer.send = send_to_scratch  # type: ignore[method-assign]
    relay = OutboxRelay(outbox, sessions, producer, infra_settings.plain_database_url)
    try:
        assert await relay.publish_batch() == 10
        assert await relay.publish_batch() == 0
        assert await relay.backlog() == 0
    finally:
        await relay.close()
        await producer.stop()
    assert set(sent_to) == {topics.INCIDENTS}

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra_settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    received = []
    try:
        async with asyncio.timeout(10):
            while len(received) < 10:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    received.extend(batch)
    finally:
        await consumer.stop()
    ids = [dict(record.headers)["ce_id"].decode() for record in received]
    assert ids == [str(event.id) for event in staged]


async def test_a_shard_another_relay_holds_is_left_to_it(
    infra_settings: Settings,
    scratch_schema,
    scratch_producer: AIOKafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The relay takes the shards it finds free: the rows of a shard held elsewhere wait for
    it, the others go. Once that shard is free, the relay's next lease takes it."""
    monkeypatch.setattr(messaging, "LEASE_SECONDS", 0.0)  # each pass a lease of its own
    sessions, outbox, _ = scratch_schema
    events = [reported_event() for _ in range(8)]
    async with sessions() as session, session.begin():
        await outbox.add(session, *events)
    other_relay = await asyncpg.connect(infra_settings.plain_database_url)
    shard_of = {
        row["key"]: row["shard"]
        for row in await other_relay.fetch(
            f"SELECT key, shard FROM {outbox.schema}.outbox WHERE published_at IS NULL"
        )
    }
    held = shard_of[events[0].subject]
    waiting = sum(1 for event in events if shard_of[event.subject] == held)

    relay = OutboxRelay(outbox, sessions, scratch_producer, infra_settings.plain_database_url)
    try:
        await other_relay.execute("SELECT pg_advisory_lock($1, $2)", relay._lock_space, held)
        assert await relay.publish_batch() == len(events) - waiting
        assert await relay.backlog() == waiting
        await other_relay.execute("SELECT pg_advisory_unlock($1, $2)", relay._lock_space, held)
        assert await relay.publish_batch() == waiting
        assert await relay.backlog() == 0
    finally:
        await relay.close()
        await other_relay.close()


async def test_inbox_applies_an_event_once(infra_settings: Settings, scratch_schema) -> None:
    sessions, _, inbox = scratch_schema
    applied: list[uuid.UUID] = []

    async def handler(_session, event: CloudEvent, _position: RecordPosition) -> None:
        applied.append(event.id)

    producer = create_producer(infra_settings, "test-inbox")
    consumer = EventConsumer(
        "test.inbox",
        [topics.INCIDENTS],
        HandlerTable({IncidentReported.ce_type: handler}),
        sessions,
        Inbox(inbox, "test.inbox"),
        producer,
        infra_settings,
    )
    event = reported_event()

    class Record:
        topic = topics.INCIDENTS
        partition = 0
        offset = 7
        key = event.key
        value = event.value()
        headers = event.headers()

    assert await consumer.process(Record()) == "applied"
    assert await consumer.process(Record()) == "duplicate"
    assert applied == [event.id]


async def test_audit_log_refuses_update_delete_and_truncate(
    infra_settings: Settings, system: ServiceProcesses, clients: dict[str, httpx.AsyncClient]
) -> None:
    await eventually(
        lambda: clients["audit"].get("/v1/log/head"), lambda response: response.json()["size"] > 0
    )
    engine = create_engine(infra_settings, pool_size=1)
    try:
        for statement in (
            "UPDATE audit.log_entries SET ce_type = 'forged' WHERE index = 0",
            "DELETE FROM audit.log_entries WHERE index = 0",
            "TRUNCATE audit.log_entries",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                async with engine.begin() as connection:
                    await connection.execute(text(statement))
    finally:
        await engine.dispose()
