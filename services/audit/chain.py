"""The hash-chained log's arithmetic; pure.

A leaf is the canonical JSON (RFC 8785 style: sorted keys, no insignificant white space, UTF-8)
of the CloudEvent with its topic, partition and offset. Leaf hashes use the RFC 9162 leaf
prefix 0x00, so the Merkle tree of the later audit work can be built over the same leaves.
Each entry's chain hash binds it to everything before it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = bytes(32)
LEAF_PREFIX = b"\x00"


def canonical_json(document: Any) -> bytes:
    return json.dumps(
        document, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode()


def leaf_document(
    *,
    topic: str,
    partition: int,
    offset: int,
    attributes: dict[str, str],
    data: Any,
) -> dict[str, Any]:
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "specversion": attributes["ce_specversion"],
        "id": attributes["ce_id"],
        "source": attributes["ce_source"],
        "type": attributes["ce_type"],
        "time": attributes["ce_time"],
        "subject": attributes["ce_subject"],
        "datacontenttype": attributes.get("content-type", "application/json"),
        "data": data,
    }


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def chain_hash(previous: bytes, leaf_digest: bytes) -> bytes:
    return hashlib.sha256(previous + leaf_digest).digest()


def first_broken_link(
    entries: list[tuple[int, bytes, bytes]], start: bytes = GENESIS
) -> int | None:
    """Index of the first (index, leaf, chain hash) entry that does not follow; None if all do."""
    previous = start
    for index, leaf, stored_chain in entries:
        expected = chain_hash(previous, leaf_hash(leaf))
        if expected != stored_chain:
            return index
        previous = stored_chain
    return None
