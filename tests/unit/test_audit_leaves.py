"""Log leaves and their canonical JSON (services/audit/leaves.py)."""

from __future__ import annotations

import hashlib
import json
import math
import struct
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.audit.handlers import new_leaf
from services.audit.leaves import _encode, canonical_json, leaf_document, leaf_hash
from shared.events import CloudEvent, decode
from shared.events.models import IncidentMerged, IncidentUnlinked, IncidentWentQuiet
from shared.kafka import RecordPosition


def test_canonical_json_sorts_keys_at_every_level_without_spaces():
    document = {"b": 1, "a": {"z": [1, 2], "y": None}, "c": True}
    assert canonical_json(document) == b'{"a":{"y":null,"z":[1,2]},"b":1,"c":true}'


def test_canonical_json_keeps_chinese_as_utf8():
    encoded = canonical_json({"township_name": "图克镇"})
    assert encoded == '{"township_name":"图克镇"}'.encode()
    assert b"\\u" not in encoded


def test_canonical_json_is_independent_of_key_order():
    assert canonical_json({"x": 1, "y": 2}) == canonical_json({"y": 2, "x": 1})


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        canonical_json({"latency_ms": math.nan})


def test_rfc9162_empty_leaf_hash():
    assert (
        leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert hashlib.sha256(b"\x00").hexdigest() == leaf_hash(b"").hex()


def test_leaf_hash_uses_the_zero_prefix():
    leaf = canonical_json({"id": "e1", "township": "图克镇"})
    assert leaf_hash(leaf) == hashlib.sha256(b"\x00" + leaf).digest()
    assert leaf_hash(leaf) != hashlib.sha256(leaf).digest()
    assert len(leaf_hash(leaf)) == 32


def test_leaf_document_maps_the_cloudevent_attributes():
    attributes = {
        "ce_specversion": "1.0",
        "ce_id": "id-1",
        "ce_source": "intake",
        "ce_type": "incident.reported",
        "ce_time": "2025-03-01T02:00:00+00:00",
        "ce_subject": "incident-1",
    }
    document = leaf_document(
        topic="incidents.v1", partition=2, offset=41, attributes=attributes, data={"a": 1}
    )
    assert document == {
        "topic": "incidents.v1",
        "partition": 2,
        "offset": 41,
        "specversion": "1.0",
        "id": "id-1",
        "source": "intake",
        "type": "incident.reported",
        "time": "2025-03-01T02:00:00+00:00",
        "subject": "incident-1",
        "datacontenttype": "application/json",
        "data": {"a": 1},
    }


@pytest.mark.parametrize(
    ("bits", "expected"),
    [  # RFC 8785 Appendix B
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("41b3de4355555555", "333333333.3333333"),
        ("4430000000000000", "295147905179352830000"),
    ],
)
def test_numbers_are_written_as_ecmascript_writes_doubles(bits: str, expected: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(value) == expected.encode()


def test_integral_floats_lose_their_point() -> None:
    assert canonical_json({"latency_ms": 3.0, "count": 3}) == b'{"count":3,"latency_ms":3}'


def test_members_sort_by_utf16_code_units() -> None:
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    encoded = canonical_json(dict.fromkeys(keys, 0)).decode()
    order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert encoded == "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:0" for k in order) + "}"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


def test_keys_after_a_float_are_still_ordered_as_jcs_orders_them() -> None:
    document = {"a": [1.0], "\U0001f600": 0, "\ufb33": {"b": 2.5}}
    assert canonical_json(document) == _encode(document).encode()


@given(json_values)
def test_the_fast_path_writes_exactly_what_the_full_encoder_writes(document) -> None:
    assert canonical_json(document) == _encode(document).encode()


def test_R20_a_merge_is_filed_under_the_merged_incident_too_and_a_report_under_none() -> None:
    kept, merged = uuid.uuid4(), uuid.uuid4()
    merge = IncidentMerged(
        incident_id=kept,
        merged_incident_id=merged,
        link_id=uuid.uuid4(),
        party="BLO",
        actor_name="周主任",
        reason="同一事件",
        merged_at=datetime.now(UTC),
    )
    position = RecordPosition("incidents.v1", 0, 7)
    leaf = new_leaf(CloudEvent.new("intake", merge, kept), position)
    assert (leaf.subject, leaf.also) == (str(kept), (str(merged),))
    unlinked = IncidentUnlinked(
        incident_id=kept,
        linked_incident_id=merged,
        link_id=merge.link_id,
        was="MERGE",
        party="BLO",
        actor_name="周主任",
        reason="并非同一事件",
        unlinked_at=datetime.now(UTC),
    )
    assert new_leaf(CloudEvent.new("intake", unlinked, kept), position).also == (str(merged),)
    quiet = IncidentWentQuiet(
        incident_id=kept,
        party="BLO",
        rule_id="R9",
        last_news_at=datetime.now(UTC),
        noticed_at=datetime.now(UTC),
        township_code="150626102",
    )
    assert new_leaf(CloudEvent.new("escalation", quiet, kept), position).also == ()


def test_a_received_event_is_logged_as_written_from_the_data_decoded_on_receipt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The leaf keeps what the producer wrote, a later version's fields too, from the JSON the
    consumer decoded when the record came: the bytes are not parsed a second time."""
    merge = IncidentMerged(
        incident_id=uuid.uuid4(),
        merged_incident_id=uuid.uuid4(),
        link_id=uuid.uuid4(),
        party="BLO",
        actor_name="周主任",
        reason="同一事件",
        merged_at=datetime.now(UTC),
    )
    sent = CloudEvent.new("intake", merge, merge.incident_id)
    written = {**json.loads(sent.value()), "witness": "值班员"}
    received = decode("incidents.v1", sent.headers(), json.dumps(written).encode())

    def no_second_parse(*_: object, **__: object) -> None:
        raise AssertionError("the record's bytes were parsed again")

    monkeypatch.setattr(json, "loads", no_second_parse)
    leaf = new_leaf(received, RecordPosition("incidents.v1", 0, 7))
    monkeypatch.undo()
    assert json.loads(leaf.leaf)["data"] == written


def test_integers_beyond_64_bits_are_written_whole() -> None:
    assert (
        canonical_json({"n": 2**70, "m": -(2**64)})
        == b'{"m":-18446744073709551616,"n":1180591620717411303424}'
    )


def test_a_value_that_is_not_json_is_refused() -> None:
    with pytest.raises(TypeError):
        canonical_json({"at": datetime(2025, 3, 1, tzinfo=UTC)})
