"""Every consumer, fed garbage and valid-looking events: each record lands, none crashes it.

A record lands when `EventConsumer.process` says `applied` (and the consumer's inbox holds its
event id at that position), `duplicate` (the inbox held it already), `ignored` (a type the
consumer reads past, and the inbox does not hold it) or `dead-lettered` (and it is on
`<topic>.dlq`, read back from the broker, with a reason). Raising is a crash: the run loop
would hold up the record's partition, retrying it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID, uuid4, uuid5

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.escalation.models import obligations
from shared.events import envelope, topics
from shared.events.registry import EVENT_TYPES
from tests.fuzz import strategies as fuzz
from tests.fuzz.conftest import FuzzBench
from tests.fuzz.harness import ConsumerUnderTest, Record

CONSUMERS = [
    pytest.param("intake", "intake.status-projection", id="intake.status-projection"),
    pytest.param("escalation", "escalation.incidents", id="escalation.incidents"),
    pytest.param("notification", "notification.escalations", id="notification.escalations"),
    pytest.param("audit", "audit.log", id="audit.log"),
]
PARTITIONS = st.integers(min_value=0, max_value=5)

# What a redelivery of a record that landed one way lands as; a dead letter, anyhow.
AGAIN = {"applied": {"duplicate"}, "duplicate": {"duplicate"}, "ignored": {"ignored"}}

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class World:
    """The ids one example's records share.

    Drawn ids are namespaced by a salt of the example's own, so no two examples (nor two runs
    of the same example while shrinking) meet each other's incidents in the database, and what
    an example does depends on its draws alone.
    """

    salt: UUID = field(default_factory=uuid4)
    incidents: list[UUID] = field(default_factory=list)
    obligations: list[UUID] = field(default_factory=list)
    # Anything the schemas allow (`strategies.py`), not only what the services write.
    wild: bool = False

    def salted(self, drawn: UUID) -> UUID:
        return uuid5(self.salt, drawn.hex)

    def incident_ids(self) -> st.SearchStrategy[UUID]:
        return st.sampled_from(self.incidents) | st.uuids().map(self.salted)

    def obligation_id(self, data: st.DataObject) -> UUID:
        """One the escalation service created for these incidents, or not. Always the same
        draws: which obligations exist is the database's answer, not the example's."""
        fresh = self.salted(data.draw(st.uuids(), label="obligation"))
        known = data.draw(st.booleans(), label="known obligation")
        index = data.draw(st.integers(min_value=0, max_value=63), label="obligation index")
        if known and self.obligations:
            return self.obligations[index % len(self.obligations)]
        return fresh


def event_record(
    data: st.DataObject,
    consumer: ConsumerUnderTest,
    ce_type: str,
    topic: str,
    world: World,
    incident_ids: st.SearchStrategy[UUID] | None = None,
) -> Record:
    """A valid event of `ce_type` on `topic` (its own, or not), about a known incident or not."""
    obligation = world.obligation_id(data)
    event = data.draw(
        fuzz.event_data(
            ce_type,
            incident_ids if incident_ids is not None else world.incident_ids(),
            st.just(obligation),
            wild=world.wild,
        ),
        label=ce_type,
    )
    incident = getattr(event, "incident_id", None)
    subject = str(incident) if incident is not None else str(world.salted(data.draw(st.uuids())))
    headers = fuzz.cloudevent_headers(
        ce_type,
        subject,
        world.salted(data.draw(st.uuids(), label="ce_id")),
        data.draw(fuzz.sources(world.wild), label="ce_source"),
        data.draw(fuzz.wild_datetimes() if world.wild else fuzz.aware_datetimes(), label="ce_time"),
        data.draw(fuzz.trace_headers(), label="trace"),
    )
    value = event.model_dump_json().encode()
    return consumer.record(topic, value, headers, subject.encode(), data.draw(PARTITIONS))


async def obligations_of(consumer: ConsumerUnderTest, incidents: list[UUID]) -> list[UUID]:
    async with consumer.sessions() as session:
        rows = await session.execute(
            select(obligations.c.id)
            .where(obligations.c.incident_id.in_(incidents))
            .order_by(obligations.c.id)
        )
        return list(rows.scalars())


async def feed(bench: FuzzBench, service: str, group: str, data: st.DataObject, wild: bool) -> None:
    """A few events sharing one or two incidents: reports, their follow-ups and actions, events
    for incidents nobody reported, redeliveries and events of other topics' types."""
    consumer = bench.consumer(service, group)
    world = World(wild=wild)
    drawn = data.draw(st.lists(st.uuids(), min_size=1, max_size=2, unique=True), label="incidents")
    world.incidents = [world.salted(incident) for incident in drawn]
    own_types = [t for t, spec in EVENT_TYPES.items() if spec.topic in consumer.topics]
    landed: list[tuple[Record, str]] = []

    async def land(record: Record, expected: set[str] | None = None) -> None:
        outcome = await consumer.land(record)
        assert expected is None or outcome in expected, (outcome, record)
        landed.append((record, outcome))
        if service == "escalation" and outcome == "applied":
            world.obligations = await obligations_of(consumer, world.incidents)

    if topics.INCIDENTS in consumer.topics and data.draw(st.booleans(), label="report first"):
        reported = event_record(
            data,
            consumer,
            "incident.reported",
            topics.INCIDENTS,
            world,
            st.just(world.incidents[0]),
        )
        await land(reported)
    for _ in range(data.draw(st.integers(min_value=1, max_value=6), label="records")):
        kind = data.draw(st.sampled_from(["event", "event", "event", "wrong topic", "again"]))
        if kind == "again" and landed:
            # Redelivered: after a crash before the commit (same offset) or a producer retry.
            earlier, outcome = data.draw(st.sampled_from(landed), label="again")
            offset = data.draw(st.sampled_from([earlier.offset, next(consumer.offsets)]))
            again = Record(
                earlier.topic,
                earlier.partition,
                offset,
                earlier.key,
                earlier.value,
                earlier.headers,
            )
            await land(again, AGAIN.get(outcome))
        elif kind == "wrong topic":
            ce_type = data.draw(st.sampled_from(sorted(EVENT_TYPES)), label="foreign type")
            elsewhere = [t for t in consumer.topics if t != EVENT_TYPES[ce_type].topic]
            if not elsewhere:
                continue
            topic = data.draw(st.sampled_from(elsewhere), label="wrong topic")
            await land(event_record(data, consumer, ce_type, topic, world), {"dead-lettered"})
        else:
            ce_type = data.draw(st.sampled_from(own_types), label="type")
            await land(event_record(data, consumer, ce_type, EVENT_TYPES[ce_type].topic, world))
    await consumer.settle(bench.dead_letters)


@pytest.mark.parametrize(("service", "group"), CONSUMERS)
@FUZZ
@given(data=st.data())
async def test_valid_looking_events_are_applied_once_or_dead_lettered(
    bench: FuzzBench, service: str, group: str, data: st.DataObject
) -> None:
    await feed(bench, service, group, data, wild=False)


@pytest.mark.parametrize(("service", "group"), CONSUMERS)
@settings(FUZZ, max_examples=40)
@given(data=st.data())
async def test_whatever_the_schemas_allow_lands(
    bench: FuzzBench, service: str, group: str, data: st.DataObject
) -> None:
    """Valid events a handler cannot store (U+0000, texts longer than their column, no
    subjects, year 9999 ...) are dead-lettered with the reason, not retried or lost."""
    await feed(bench, service, group, data, wild=True)


def corrupted(
    headers: list[tuple[str, bytes | None]], how: str, data: st.DataObject
) -> list[tuple[str, bytes | None]]:
    """Valid CloudEvents headers spoiled in one way decoding must refuse."""
    if how == "drop":
        name = data.draw(st.sampled_from(envelope.REQUIRED_HEADERS), label="dropped")
        return [(key, value) for key, value in headers if key != name]
    replacements = {
        "specversion": ("ce_specversion", st.sampled_from([b"0.3", b"1", b"", b"2.0"])),
        "id": ("ce_id", fuzz.texts(0, 12).map(str.encode)),
        "time": (
            "ce_time",
            st.sampled_from([b"2025-01-01T08:00:00", b"yesterday", b"2025-13-01T00:00:00Z"]),
        ),
        "type": ("ce_type", st.sampled_from([b"incident.deleted", b"", b"INCIDENT.REPORTED"])),
        "utf8": (
            data.draw(st.sampled_from(envelope.REQUIRED_HEADERS), label="not utf-8"),
            st.just(b"\xff\xfe\xfd"),
        ),
    }
    name, values = replacements[how]
    value = data.draw(values, label=how)
    return [(key, value if key == name else original) for key, original in headers]


@pytest.mark.parametrize(("service", "group"), CONSUMERS)
@FUZZ
@given(data=st.data())
async def test_garbage_is_dead_lettered_with_its_reason(
    bench: FuzzBench, service: str, group: str, data: st.DataObject
) -> None:
    consumer = bench.consumer(service, group)
    topic = data.draw(st.sampled_from(consumer.topics), label="topic")
    key = data.draw(st.none() | st.binary(max_size=16), label="key")
    partition = data.draw(PARTITIONS, label="partition")
    how = data.draw(
        st.sampled_from(["bytes", "value", "drop", "specversion", "id", "time", "type", "utf8"]),
        label="garbage",
    )
    if how == "bytes":
        # Anything at all: random headers and value.
        record = consumer.record(
            topic,
            data.draw(fuzz.garbage_values()),
            data.draw(fuzz.garbage_headers()),
            key,
            partition,
        )
    else:
        # A type the consumer acts on: one it reads past is never decoded (below).
        ce_type = data.draw(
            st.sampled_from(
                [
                    t
                    for t, spec in EVENT_TYPES.items()
                    if spec.topic == topic and t not in consumer.consumer.handlers.ignored
                ]
            )
        )
        valid = event_record(data, consumer, ce_type, topic, World(incidents=[uuid4()]))
        if how == "value":
            # The right headers, a value that is not this type's data.
            value = data.draw(fuzz.garbage_values(), label="value")
            record = consumer.record(topic, value, valid.headers, key, partition)
        else:
            headers = corrupted(valid.headers, how, data)
            record = consumer.record(topic, valid.value, headers, key, partition)
    assert await consumer.land(record) == "dead-lettered"
    await consumer.settle(bench.dead_letters)


IGNORING = [consumer for consumer in CONSUMERS if consumer.values[0] != "audit"]


@pytest.mark.parametrize(("service", "group"), IGNORING)
@FUZZ
@given(data=st.data())
async def test_a_type_read_past_is_never_decoded_whatever_its_record_holds(
    bench: FuzzBench, service: str, group: str, data: st.DataObject
) -> None:
    """Its `ce_type` header says it is for other consumers; audit, which reads past none,
    dead-letters the same record when it is garbage (the test above)."""
    consumer = bench.consumer(service, group)
    ignored = sorted(consumer.consumer.handlers.ignored)
    ce_type = data.draw(st.sampled_from(ignored), label="type")
    topic = EVENT_TYPES[ce_type].topic
    headers = [
        *data.draw(fuzz.garbage_headers(), label="headers"),
        ("ce_type", ce_type.encode()),
    ]
    value = data.draw(fuzz.garbage_values(), label="value")
    record = consumer.record(topic, value, headers, None, data.draw(PARTITIONS))
    assert await consumer.land(record) == "ignored"
