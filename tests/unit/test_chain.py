"""The audit log's hash chain (services/audit/chain.py)."""

from __future__ import annotations

import hashlib
import math

import pytest

from services.audit.chain import (
    GENESIS,
    canonical_json,
    chain_hash,
    first_broken_link,
    leaf_document,
    leaf_hash,
)


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


def test_chain_hash_binds_previous_and_leaf():
    digest = leaf_hash(b"{}")
    assert chain_hash(GENESIS, digest) == hashlib.sha256(bytes(32) + digest).digest()
    assert chain_hash(GENESIS, digest) != chain_hash(digest, GENESIS)


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


def build_chain(leaves: list[bytes], start: bytes = GENESIS) -> list[tuple[int, bytes, bytes]]:
    entries, previous = [], start
    for index, leaf in enumerate(leaves):
        previous = chain_hash(previous, leaf_hash(leaf))
        entries.append((index, leaf, previous))
    return entries


LEAVES = [canonical_json({"offset": n, "note": f"第{n}条"}) for n in range(5)]


def test_intact_chain_has_no_broken_link():
    assert first_broken_link(build_chain(LEAVES)) is None
    assert first_broken_link([]) is None


def test_chain_can_be_checked_from_a_later_start():
    entries = build_chain(LEAVES)
    start = entries[1][2]
    assert first_broken_link(entries[2:], start=start) is None
    assert first_broken_link(entries[2:]) == 2  # wrong start: the first entry does not follow


@pytest.mark.parametrize("tampered", range(len(LEAVES)))
def test_tampered_leaf_is_found_at_its_index(tampered):
    entries = build_chain(LEAVES)
    index, _, stored = entries[tampered]
    entries[tampered] = (index, canonical_json({"offset": tampered, "note": "改过"}), stored)
    assert first_broken_link(entries) == tampered


def test_tampered_chain_hash_is_found_at_its_index():
    entries = build_chain(LEAVES)
    index, leaf, _ = entries[3]
    entries[3] = (index, leaf, bytes(32))
    assert first_broken_link(entries) == 3


def test_removed_entry_breaks_the_chain_at_the_next_one():
    entries = build_chain(LEAVES)
    del entries[2]
    assert first_broken_link(entries) == 3


def test_reported_index_is_the_entrys_own_index_not_its_position():
    entries = [(100 + i, leaf, digest) for i, (_, leaf, digest) in enumerate(build_chain(LEAVES))]
    index, _, stored = entries[1]
    entries[1] = (index, b"{}", stored)
    assert first_broken_link(entries) == 101
