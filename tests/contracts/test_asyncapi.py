"""The AsyncAPI document is a well-formed AsyncAPI 3.0 description of every topic and type, and
the published event schemas accept what the services publish."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.dlq import DLQ_HEADERS
from shared.events import envelope
from shared.events.registry import EVENT_TYPES
from shared.events.topics import ALL_TOPICS, dead_letter_topic
from shared.kafka import EventConsumer
from shared.settings import Settings
from tests.fuzz import strategies as fuzz
from tests.support import CapturingProducer
from tools import contracts

COMPONENT_KEY = re.compile(r"^[\w\d.\-_]+$")  # the AsyncAPI 3.0 schema's pattern for components
OPERATION_ACTIONS = {"send", "receive"}
GROUPS = {
    "intake.status-projection": {"escalations.v1"},
    "escalation.incidents": {"incidents.v1", "notifications.v1"},
    # R15: the CEO is told of accountability records (audit.v1)
    "notification.escalations": {"escalations.v1", "audit.v1"},
    "audit.log": set(ALL_TOPICS),
}


@pytest.fixture(scope="module")
def document(generated: dict[Path, Any]) -> dict[str, Any]:
    return generated[contracts.ASYNCAPI_FILE]


def references(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every `$ref` in the document, with where it stands."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from references(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from references(value, f"{where}/{index}")


def test_required_fields(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] and document["info"]["version"]
    assert document["defaultContentType"] == "application/json"
    for operation_id, operation in document["operations"].items():
        assert operation["action"] in OPERATION_ACTIONS, operation_id
        assert set(operation["channel"]) == {"$ref"}, operation_id
        channel = contracts.resolve_pointer(document, operation["channel"]["$ref"])
        # An operation's messages must be some of its channel's messages.
        for message in operation.get("messages", []):
            prefix = operation["channel"]["$ref"] + "/messages/"
            assert message["$ref"].startswith(prefix), (operation_id, message)
            assert message["$ref"].removeprefix(prefix) in channel["messages"]
    for kind, entries in document["components"].items():
        for key in entries:
            assert COMPONENT_KEY.match(key), f"components.{kind} key {key!r}"
    for message_id, message in document["components"]["messages"].items():
        assert {"name", "payload", "headers"} <= set(message), message_id


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    found = list(references(document))
    assert found
    for where, ref in found:
        assert ref.startswith("#/"), f"{where}: {ref} points outside the document"
        contracts.resolve_pointer(document, ref)  # KeyError names what is missing


def test_channels_are_the_topics_and_their_dead_letters(document: dict[str, Any]) -> None:
    expected = [name for topic in ALL_TOPICS for name in (topic, dead_letter_topic(topic))]
    assert list(document["channels"]) == expected
    for name, channel in document["channels"].items():
        assert channel["address"] == name
        assert channel["bindings"]["kafka"]["topic"] == name


def test_each_registered_type_appears_exactly_once(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    described = [name for name in messages if not name.startswith("dead-letter.")]
    assert sorted(described) == sorted(EVENT_TYPES)
    placed = [
        (ce_type, topic)
        for topic, channel in document["channels"].items()
        for ce_type in channel["messages"]
        if ce_type != "deadLetter"
    ]
    assert sorted(placed) == sorted((t, spec.topic) for t, spec in EVENT_TYPES.items())
    for ce_type in EVENT_TYPES:
        message = messages[ce_type]
        assert message["name"] == ce_type
        payload = contracts.resolve_pointer(document, message["payload"]["$ref"])
        assert payload["title"] == EVENT_TYPES[ce_type].model.__name__
        header_schema, this_type = message["headers"]["allOf"]
        assert this_type["properties"]["ce_type"] == {"const": ce_type}
        headers = contracts.resolve_pointer(document, header_schema["$ref"])
        assert headers["required"] == list(envelope.REQUIRED_HEADERS)
        assert set(headers["properties"]) == {
            *envelope.REQUIRED_HEADERS,
            "content-type",
            "traceparent",
            "tracestate",
        }


def test_dead_letters_carry_the_original_record_and_the_dlq_headers(
    document: dict[str, Any],
) -> None:
    for topic in ALL_TOPICS:
        letter = document["components"]["messages"][f"dead-letter.{topic}"]
        assert set(letter["headers"]["required"]) == DLQ_HEADERS
        assert letter["headers"]["properties"]["dlq_original_topic"]["const"] == topic
        groups = {group for group, read in GROUPS.items() if topic in read}
        assert set(letter["headers"]["properties"]["dlq_consumer"]["enum"]) == groups


def test_operations_say_who_sends_and_who_receives(document: dict[str, Any]) -> None:
    operations = document["operations"]
    for topic, producer in contracts.PRODUCERS.items():
        assert operations[f"{producer}.send.{topic}"]["action"] == "send"
    for group, read in GROUPS.items():
        for topic in read:
            receive = operations[f"{group}.receive.{topic}"]
            assert receive["action"] == "receive"
            assert receive["channel"] == {"$ref": f"#/channels/{topic}"}
            assert receive["bindings"]["kafka"]["groupId"]["enum"] == [group]
            dead_letter = operations[f"{group}.dead-letter.{topic}"]
            assert dead_letter["channel"] == {"$ref": f"#/channels/{dead_letter_topic(topic)}"}
    receivers = {key.split(".receive.")[0] for key in operations if ".receive." in key}
    assert {group for group in receivers if not group.startswith("dlq-replay.")} == set(GROUPS)


def test_each_group_receives_what_it_handles_and_names_what_it_reads_past(
    document: dict[str, Any],
) -> None:
    """The document says what each group acts on (its handler table), and every type of a
    topic is one or the other for every group that reads the topic."""
    operations = document["operations"]
    for group, read in GROUPS.items():
        for topic in read:
            receive = operations[f"{group}.receive.{topic}"]
            prefix = f"#/channels/{topic}/messages/"
            handled = {ref["$ref"].removeprefix(prefix) for ref in receive["messages"]}
            ignored = set(receive["x-ignored-messages"])
            assert handled, (group, topic)
            assert not handled & ignored, (group, topic)
            assert handled | ignored == set(document["channels"][topic]["messages"]), (group, topic)
    escalation = operations["escalation.incidents.receive.notifications.v1"]
    read_past = set(escalation["x-ignored-messages"])
    assert read_past == {
        "notification.delivered",
        "notification.failed",
        "notification.withdrawn",
        "notification.notice_attempted",
    }


# The schemas as generated: the drift tests see to it that the committed ones are the same, and
# say how to fix it when they are not.


@pytest.mark.parametrize("ce_type", sorted(EVENT_TYPES))
def test_published_event_schemas_are_json_schemas(ce_type: str) -> None:
    schema = contracts.event_schema(ce_type)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["x-ce-type"] == ce_type
    assert schema["x-topic"] == EVENT_TYPES[ce_type].topic


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_what_the_models_accept_the_published_schemas_accept(data: st.DataObject) -> None:
    """A subscriber validating with `docs/events/schemas/` accepts every event we publish."""
    ce_type = data.draw(st.sampled_from(sorted(EVENT_TYPES)))
    schema = contracts.event_schema(ce_type)
    event = data.draw(fuzz.event_data(ce_type, st.uuids()))
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(event.model_dump(mode="json"))


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(64, id="ordinary"),
        pytest.param(2 * 1024 * 1024, id="truncated"),
    ],
)
async def test_every_header_a_dead_letter_gets_is_described_and_stripped_on_replay(
    document: dict[str, Any], size: int
) -> None:
    producer = CapturingProducer()
    consumer = EventConsumer(
        "audit.log",
        ALL_TOPICS,
        None,
        None,
        None,
        producer,
        Settings(),
    )
    original = [("ce_id", b"not even a uuid")]
    record = SimpleNamespace(
        topic="incidents.v1", partition=3, offset=7, key=b"k", value=b"x" * size, headers=original
    )
    await consumer.dead_letter(record, "value is not JSON")  # type: ignore[arg-type]
    (letter,) = producer.sent
    added = {name for name, _ in letter["headers"]} - {name for name, _ in original}
    message = document["components"]["messages"]["dead-letter.incidents.v1"]
    assert added <= set(message["headers"]["properties"])
    assert added <= DLQ_HEADERS
