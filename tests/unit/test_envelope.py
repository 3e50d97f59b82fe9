"""CloudEvents 1.0 in Kafka binary mode (shared/events/envelope.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from shared.domain.vocabulary import ActionCode, Category, Phase
from shared.events import CloudEvent, UndecodableEvent, decode, topic_of, topics
from shared.events.envelope import REQUIRED_HEADERS
from shared.events.models import (
    AccountabilityFinding,
    ActionRecorded,
    EventData,
    IncidentBrief,
    IncidentFacts,
    IncidentReported,
    NotificationDelivered,
    ObligationCreated,
    Reporter,
    Subject,
)

INCIDENT_ID = UUID("0b7d3c6e-7a53-4cc0-9b5e-3e7f4f0a1c01")
AT = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
TUKE = "150626102"


def incident_reported() -> IncidentReported:
    return IncidentReported(
        incident_id=INCIDENT_ID,
        facts=IncidentFacts(
            category=Category.VIOLENCE,
            phase=Phase.IN_PROGRESS,
            township_code=TUKE,
            township_name="图克镇",
            subjects=(Subject(id="WS-1", name="王某某", id_number_masked="150626********1234"),),
            occurred_at=AT,
            location="图克镇某村",
        ),
        reporter=Reporter(party=f"SFS:{TUKE}", name="李所长"),
        reported_at=AT,
    )


def obligation_created() -> ObligationCreated:
    return ObligationCreated(
        incident_id=INCIDENT_ID,
        obligation_id=uuid4(),
        party=f"PPS:{TUKE}",
        action="CALL_POLICE",
        action_text="接报警：社区矫正对象突发事件",
        deadline_name="IMMEDIATE",
        due_at=AT + timedelta(minutes=15),
        rule_id="R6",
        plan_section="四(三)",
        explanation="依据 R6（预案四(三)）",
        notify=True,
        incident=IncidentBrief(
            category=Category.VIOLENCE,
            phase=Phase.IN_PROGRESS,
            township_code=TUKE,
            township_name="图克镇",
            subject_names=("王某某",),
        ),
    )


def notification_delivered() -> NotificationDelivered:
    return NotificationDelivered(
        notification_id=uuid4(),
        incident_id=INCIDENT_ID,
        obligation_id=uuid4(),
        party=f"PPS:{TUKE}",
        channel="file",
        contact="演练",
        attempt=1,
        outcome="DELIVERED",
        latency_ms=1.5,
        attempted_at=AT,
    )


def accountability_finding() -> AccountabilityFinding:
    return AccountabilityFinding(
        finding_id=uuid4(),
        incident_id=INCIDENT_ID,
        rule_id="R10",
        party=f"SFS:{TUKE}",
        kind="LATE",
        detail="迟报：超过 IMMEDIATE 时限",
        evidence_log_indexes=(3, 7),
    )


ONE_OF_EACH_TOPIC = [
    (topics.INCIDENTS, incident_reported),
    (topics.ESCALATIONS, obligation_created),
    (topics.NOTIFICATIONS, notification_delivered),
    (topics.AUDIT, accountability_finding),
]


def event(data: EventData | None = None) -> CloudEvent:
    return CloudEvent.new("intake", data or incident_reported(), INCIDENT_ID, trace_headers={})


def with_header(headers: list[tuple[str, bytes]], name: str, value: bytes | None):
    return [(n, value if n == name else v) for n, v in headers]


def without_header(headers: list[tuple[str, bytes]], name: str):
    return [(n, v) for n, v in headers if n != name]


@pytest.mark.parametrize(("topic", "make"), ONE_OF_EACH_TOPIC)
def test_round_trip_of_one_event_type_per_topic(topic, make):
    data = make()
    sent = CloudEvent.new("test-source", data, INCIDENT_ID, trace_headers={})
    assert topic_of(data) == topic
    received = decode(topic, sent.headers(), sent.value())
    assert received == sent
    assert received.data == data
    assert type(received.data) is type(data)
    assert received.raw_value == sent.value()
    assert received.key == str(INCIDENT_ID).encode()


@pytest.mark.parametrize(("topic", "make"), ONE_OF_EACH_TOPIC)
def test_the_value_is_the_data_as_compact_utf8_json_in_declared_order(topic, make):
    sent = CloudEvent.new("test-source", make(), INCIDENT_ID, trace_headers={})
    written = json.dumps(sent.data_json(), ensure_ascii=False, separators=(",", ":"))
    assert sent.value() == written.encode()


def test_headers_carry_the_cloudevents_attributes():
    sent = event()
    headers = dict(sent.headers())
    assert all(isinstance(value, bytes) for value in headers.values())
    assert headers["ce_specversion"] == b"1.0"
    assert UUID(headers["ce_id"].decode()) == sent.id
    assert headers["ce_source"] == b"intake"
    assert headers["ce_type"] == b"incident.reported"
    assert datetime.fromisoformat(headers["ce_time"].decode()) == sent.time
    assert datetime.fromisoformat(headers["ce_time"].decode()).tzinfo is not None
    assert headers["ce_subject"] == str(INCIDENT_ID).encode()
    assert headers["content-type"] == b"application/json"
    assert set(REQUIRED_HEADERS) <= set(headers)


def test_value_is_compact_utf8_json_of_the_data():
    sent = event()
    value = sent.value()
    assert "图克镇".encode() in value
    assert b", " not in value and b": " not in value
    assert json.loads(value) == sent.data.model_dump(mode="json")


def test_trace_headers_travel_and_come_back():
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    sent = CloudEvent.new("intake", incident_reported(), INCIDENT_ID, trace_headers=trace)
    assert ("traceparent", trace["traceparent"].encode()) in sent.headers()
    assert decode(topics.INCIDENTS, sent.headers(), sent.value()).trace_headers == trace


# --- undecodable records --------------------------------------------------------------------


def reason_of(topic: str, headers, value) -> str:
    with pytest.raises(UndecodableEvent) as caught:
        decode(topic, headers, value)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


@pytest.mark.parametrize("missing", REQUIRED_HEADERS)
def test_missing_header_is_named(missing):
    sent = event()
    reason = reason_of(topics.INCIDENTS, without_header(sent.headers(), missing), sent.value())
    assert reason == f"missing CloudEvents headers: {missing}"


@pytest.mark.parametrize("character", ["\x00", "\x12", "\n"])
def test_control_characters_in_a_header_dead_letter_the_record(character):
    """The inbox keys events on their source: a NUL there would fail every retry."""
    sent = event()
    headers = [
        (name, b"intake" + character.encode() if name == "ce_source" else value)
        for name, value in sent.headers()
    ]
    reason = reason_of(topics.INCIDENTS, headers, sent.value())
    assert reason == "control characters in headers: ce_source"


def test_no_headers_at_all_lists_every_missing_one():
    reason = reason_of(topics.INCIDENTS, [], b"{}")
    assert reason == "missing CloudEvents headers: " + ", ".join(REQUIRED_HEADERS)
    assert reason_of(topics.INCIDENTS, None, b"{}") == reason


def test_empty_header_counts_as_missing():
    sent = event()
    headers = with_header(sent.headers(), "ce_source", None)
    assert reason_of(topics.INCIDENTS, headers, sent.value()) == (
        "missing CloudEvents headers: ce_source"
    )


def test_unknown_ce_type():
    sent = event()
    headers = with_header(sent.headers(), "ce_type", b"incident.teleported")
    reason = reason_of(topics.INCIDENTS, headers, sent.value())
    assert reason == "unknown ce_type 'incident.teleported'"


def test_type_on_the_wrong_topic():
    sent = event()
    reason = reason_of(topics.ESCALATIONS, sent.headers(), sent.value())
    assert reason == "ce_type 'incident.reported' does not belong on escalations.v1"


def test_bad_json_value():
    sent = event()
    reason = reason_of(topics.INCIDENTS, sent.headers(), b'{"incident_id": ')
    assert reason.startswith("value is not JSON:")


def test_value_that_is_not_utf8():
    sent = event()
    assert reason_of(topics.INCIDENTS, sent.headers(), b"\xff\xfe{}").startswith(
        "value is not JSON:"
    )


def test_missing_value():
    sent = event()
    assert reason_of(topics.INCIDENTS, sent.headers(), None) == "record has no value"


def test_data_failing_validation_names_the_field():
    sent = event()
    payload = json.loads(sent.value())
    payload["facts"]["category"] = "JAYWALKING"
    reason = reason_of(topics.INCIDENTS, sent.headers(), json.dumps(payload).encode())
    assert reason.startswith("incident.reported data invalid: ")
    assert "facts.category" in reason


def test_data_with_a_missing_field_names_it():
    sent = event()
    payload = json.loads(sent.value())
    del payload["reported_at"]
    reason = reason_of(topics.INCIDENTS, sent.headers(), json.dumps(payload).encode())
    assert "reported_at: Field required" in reason


def with_fields_of_a_later_version(sent: CloudEvent) -> dict:
    """The record's data as a later producer might write it: optional fields this version
    does not declare, at the top and inside nested objects."""
    payload = json.loads(sent.value())
    payload["escort_unit"] = "乌审旗公安局"
    payload["facts"]["weather"] = "大风"
    payload["facts"]["subjects"][0]["nickname"] = "老王"
    return payload


def test_a_reader_ignores_fields_its_version_does_not_declare():
    """Tolerant reader: a subscriber upgraded after its producer applies the record; the new
    fields are ignored, everything it knows is read as before."""
    sent = event()
    value = json.dumps(with_fields_of_a_later_version(sent), ensure_ascii=False).encode()
    received = decode(topics.INCIDENTS, sent.headers(), value)
    assert received.data == sent.data
    assert received.value() == sent.value()
    assert received.raw_value == value  # audit keeps the record as it was written
    # ... and its data as written, fields of the later version too, decoded once.
    assert received.raw_data == json.loads(value)
    assert received.raw_data["facts"]["weather"] == "大风"


def test_invalid_data_with_unknown_fields_is_dead_lettered_for_what_is_invalid():
    """The DLQ reason names what is wrong, not the fields a later version added."""
    sent = event()
    payload = with_fields_of_a_later_version(sent)
    del payload["reported_at"]
    payload["facts"]["category"] = "JAYWALKING"
    reason = reason_of(topics.INCIDENTS, sent.headers(), json.dumps(payload).encode())
    assert reason.startswith("incident.reported data invalid: ")
    assert "reported_at: Field required" in reason and "facts.category" in reason
    assert not {"escort_unit", "weather", "nickname"} & set(reason.replace(";", " ").split())


def test_a_producer_cannot_build_an_event_with_an_undeclared_field():
    """Strict writer: a service publishes only the fields its own schema declares."""
    with pytest.raises(ValidationError, match="IncidentReported does not declare id_number"):
        IncidentReported(**incident_reported().model_dump(), id_number="150626199001011234")
    with pytest.raises(ValidationError, match="Subject does not declare nickname"):
        Subject(id="WS-1", name="王某某", nickname="老王")
    data = with_fields_of_a_later_version(event())
    with pytest.raises(ValidationError, match="does not declare escort_unit"):
        IncidentReported.model_validate(data)
    del data["escort_unit"]
    with pytest.raises(ValidationError, match="IncidentFacts does not declare weather"):
        IncidentReported.model_validate(data)
    assert IncidentReported.read(with_fields_of_a_later_version(event())) == incident_reported()


def test_data_that_is_not_an_object_reports_the_root():
    sent = event()
    reason = reason_of(topics.INCIDENTS, sent.headers(), b"[]")
    assert "(root)" in reason


def test_naive_ce_time():
    sent = event()
    headers = with_header(sent.headers(), "ce_time", b"2025-03-01T10:00:00")
    assert reason_of(topics.INCIDENTS, headers, sent.value()) == "ce_time has no time zone"


def test_unparseable_ce_time_or_id():
    sent = event()
    bad_time = with_header(sent.headers(), "ce_time", b"yesterday")
    assert reason_of(topics.INCIDENTS, bad_time, sent.value()).startswith("bad ce_id or ce_time")
    bad_id = with_header(sent.headers(), "ce_id", b"not-a-uuid")
    assert reason_of(topics.INCIDENTS, bad_id, sent.value()).startswith("bad ce_id or ce_time")


def test_wrong_specversion():
    sent = event()
    headers = with_header(sent.headers(), "ce_specversion", b"0.3")
    assert reason_of(topics.INCIDENTS, headers, sent.value()) == "unsupported ce_specversion '0.3'"


def test_non_utf8_header():
    sent = event()
    headers = with_header(sent.headers(), "ce_source", b"\xff\xfeintake")
    assert reason_of(topics.INCIDENTS, headers, sent.value()) == "header ce_source is not UTF-8"


def test_undecodable_event_is_a_value_error():
    assert issubclass(UndecodableEvent, ValueError)


def test_action_recorded_keeps_its_action_code():
    data = ActionRecorded(
        incident_id=INCIDENT_ID,
        action_id=uuid4(),
        action=ActionCode.POLICE_CALLED,
        party=f"SFS:{TUKE}",
        actor_name="李所长",
        occurred_at=AT,
        recorded_at=AT,
    )
    sent = event(data)
    received = decode(topics.INCIDENTS, sent.headers(), sent.value())
    assert received.data.action is ActionCode.POLICE_CALLED
