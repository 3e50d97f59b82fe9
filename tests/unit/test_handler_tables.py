"""Every consumer decides about every type of the topics it reads (shared/kafka.py
`HandlerTable`): handled types are claimed in the inbox and applied, ignored types are read past
without a trace, and a type nobody decided about is refused when the service is composed, and
dead-lettered should one arrive anyway. No database or broker: the decisions come first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from shared.db import service_metadata
from shared.events import EVENT_TYPES, CloudEvent, topics
from shared.events.models import NotificationDelivered, PersonalDataRead
from shared.kafka import EventConsumer, HandlerTable, RecordPosition
from shared.runtime import MessagingTables, ServiceRuntime
from shared.settings import Settings
from tests.notification.builders import obligation
from tests.support import CapturingProducer
from tools import contracts


async def nothing(_session: Any, _event: CloudEvent, _position: RecordPosition) -> None:
    raise AssertionError("an ignored or undecided type reached a handler")


def types_on(topic: str) -> set[str]:
    return {ce_type for ce_type, spec in EVENT_TYPES.items() if spec.topic == topic}


@pytest.fixture(scope="module")
def consumers() -> list[contracts.ConsumerSpec]:
    """Every consumer as the services' `create_app` registers it (nothing connects)."""
    return [spec for _, specs in contracts.services().values() for spec in specs]


def test_every_consumer_decides_about_every_type_of_its_topics(
    consumers: list[contracts.ConsumerSpec],
) -> None:
    assert {spec.group for spec in consumers} == {
        "intake.status-projection",
        "escalation.incidents",
        "notification.escalations",
        "audit.log",
    }
    for spec in consumers:
        assert spec.handlers.undecided(spec.topics) == [], spec.group
        assert spec.handlers.foreign(spec.topics) == [], spec.group
        assert not spec.handlers.handled & spec.handlers.ignored, spec.group
        for topic in spec.topics:  # a topic read for nothing is not read at all
            assert spec.handlers.handled & types_on(topic), (spec.group, topic)


def test_what_each_consumer_acts_on(consumers: list[contracts.ConsumerSpec]) -> None:
    tables = {spec.group: spec.handlers for spec in consumers}
    escalation = tables["escalation.incidents"]
    # Deliveries, withdrawn alerts, notices and reads of personal data change no obligation:
    # no inbox row for them. Links and merges of incidents do (R20).
    assert {"incident.linked", "incident.merged", "incident.unlinked"} <= escalation.handled
    assert {
        "notification.delivered",
        "notification.failed",
        "notification.withdrawn",
        "notification.notice_attempted",
        "incident.personal_data_read",
    } == escalation.ignored
    # An obligation met or waived stops its alert; a refusal is told to who recorded it, a
    # change to every party already alerted (R19), a quiet incident to the BLO (R9); R15: of
    # the audit, only a commendation or discipline is told (to the CEO). One group reads both.
    notification = tables["notification.escalations"]
    assert notification.handled == {
        "obligation.created",
        "obligation.met",
        "obligation.waived",
        "action.rejected",
        "incident.updated",
        "incident.went_quiet",
        "accountability.recorded",
    }
    assert notification.ignored & types_on(topics.AUDIT) == types_on(topics.AUDIT) - {
        "accountability.recorded"
    }
    assert tables["intake.status-projection"].handled == {
        "incident.status_changed",
        "action.rejected",
    }
    # The log takes everything, whatever it is about.
    assert tables["audit.log"].handled == set(EVENT_TYPES) and not tables["audit.log"].ignored
    # Of the handled types only a duty may ask nothing of its consumer: notification's, when it
    # alerts nobody and was moved from no other incident.
    assert {group: set(table.asks) for group, table in tables.items() if table.asks} == {
        "notification.escalations": {"obligation.created"}
    }


def test_a_duty_asks_notification_for_an_alert_or_for_the_alert_it_had(
    consumers: list[contracts.ConsumerSpec],
) -> None:
    [notification] = [spec for spec in consumers if spec.group == "notification.escalations"]
    of_a_duty = notification.handlers.asks["obligation.created"]
    alerting = obligation("SFS:150626102")
    silent = alerting.model_copy(update={"notify": False})
    moved = silent.model_copy(update={"moved_from": uuid.uuid4()})
    assert of_a_duty(alerting) and of_a_duty(moved) and not of_a_duty(silent)


def test_a_type_cannot_be_both_handled_and_ignored() -> None:
    with pytest.raises(ValueError, match=r"notification\.delivered"):
        HandlerTable({"notification.delivered": nothing}, frozenset({"notification.delivered"}))


def test_a_new_type_on_a_topic_stops_the_service_until_its_consumers_decide() -> None:
    runtime = ServiceRuntime(
        "scratch", contracts.document_settings(), MessagingTables.of(service_metadata("scratch"))
    )
    every_type_but_one = types_on(topics.NOTIFICATIONS) - {"notification.failed"}
    table = HandlerTable.of(nothing, every_type_but_one)
    assert table.undecided([topics.NOTIFICATIONS]) == ["notification.failed"]
    with pytest.raises(ValueError, match=r"notification\.failed"):
        runtime.add_consumer("scratch.notifications", [topics.NOTIFICATIONS], table)
    stale = HandlerTable.of(nothing, types_on(topics.NOTIFICATIONS) | {"obligation.created"})
    assert stale.foreign([topics.NOTIFICATIONS]) == ["obligation.created"]
    with pytest.raises(ValueError, match=r"obligation\.created"):
        runtime.add_consumer("scratch.notifications", [topics.NOTIFICATIONS], stale)
    assert runtime.consumer_registrations == []


def personal_data_read(incident_id: uuid.UUID) -> CloudEvent:
    return CloudEvent.new(
        "intake",
        PersonalDataRead(
            incident_id=incident_id,
            party="BLO",
            subject="officer-1",
            fields=("id_number",),
            read_at=datetime.now(UTC),
        ),
        incident_id,
    )


def reader(ignored: set[str] | frozenset[str], producer: CapturingProducer) -> EventConsumer:
    """A consumer of incidents.v1 and notifications.v1 that handles nothing and ignores
    `ignored`, with no sessions and no inbox."""
    return EventConsumer(
        "scratch.reader",
        [topics.INCIDENTS, topics.NOTIFICATIONS],
        HandlerTable({}, frozenset(ignored)),
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        producer,  # type: ignore[arg-type]
        Settings(),
    )


def record_of(event: CloudEvent, topic: str, offset: int) -> SimpleNamespace:
    return SimpleNamespace(
        topic=topic,
        partition=0,
        offset=offset,
        key=event.key,
        value=event.value(),
        headers=event.headers(),
    )


async def test_an_ignored_type_is_read_past_and_an_undecided_one_dead_lettered() -> None:
    incident_id = uuid.uuid4()
    delivered = CloudEvent.new(
        "notification",
        NotificationDelivered(
            notification_id=uuid.uuid4(),
            incident_id=incident_id,
            obligation_id=uuid.uuid4(),
            party="SFS:150626102",
            channel="webhook",
            contact="值班电话",
            attempt=1,
            outcome="DELIVERED",
            latency_ms=12.5,
            attempted_at=datetime.now(UTC),
        ),
        incident_id,
    )
    read = personal_data_read(incident_id)
    producer = CapturingProducer()
    # No sessions and no inbox: reading past a type must need neither.
    consumer = reader(frozenset(types_on(topics.NOTIFICATIONS)), producer)
    assert await consumer.process(record_of(delivered, topics.NOTIFICATIONS, 1)) == "ignored"
    assert producer.sent == []
    outcome = await consumer.process(record_of(read, topics.INCIDENTS, 2))
    assert outcome == "dead-lettered"
    (letter,) = producer.sent
    assert letter["topic"] == "incidents.v1.dlq"
    reason = dict(letter["headers"])["dlq_reason"].decode()
    assert "incident.personal_data_read" in reason and "handle or ignore" in reason


async def test_an_ignored_type_is_told_by_its_header_and_its_value_never_read() -> None:
    """Most records of a topic are for other consumers: reading past one decodes nothing of
    it, alone or in a batch, and needs no transaction. Audit logs every event, and so
    dead-letters one whose value is broken (`tests/fuzz`)."""
    incident_id = uuid.uuid4()
    read = personal_data_read(incident_id)
    producer = CapturingProducer()
    # No sessions and no inbox: neither path may reach for them.
    consumer = reader(types_on(topics.NOTIFICATIONS) | {"incident.personal_data_read"}, producer)
    broken = [
        SimpleNamespace(**{**vars(record_of(read, topics.INCIDENTS, offset)), "value": value})
        for offset, value in enumerate([b"not json", b"{}", None])
    ]
    for record in broken:
        assert await consumer.process(record) == "ignored"
    await consumer._apply_batch(broken)  # type: ignore[arg-type]
    assert producer.sent == []

    # Decoding reads the last header of a name, and so does the look at the type: a record
    # whose last ce_type is not one read past is decoded, and here dead-lettered.
    twice = record_of(read, topics.INCIDENTS, 9)
    twice.headers = [*twice.headers, ("ce_type", b"notification.delivered")]
    assert await consumer.process(twice) == "dead-lettered"
    # An ignored type on a topic it does not belong to is decoded, and refused for that.
    astray = SimpleNamespace(**{**vars(record_of(read, topics.NOTIFICATIONS, 10))})
    assert await consumer.process(astray) == "dead-lettered"
    reasons = [dict(letter["headers"])["dlq_reason"].decode() for letter in producer.sent]
    assert "does not belong on incidents.v1" in reasons[0]
    assert "does not belong on notifications.v1" in reasons[1]


def test_a_table_asks_only_of_types_it_handles() -> None:
    with pytest.raises(ValueError, match="asks of types not handled"):
        HandlerTable(
            {NotificationDelivered.ce_type: nothing},
            frozenset({PersonalDataRead.ce_type}),
            asks={PersonalDataRead.ce_type: lambda _: True},
        )
