"""Every RFC 9162 test vector of tests/vectors/rfc9162 (transparency-dev/merkle, Apache-2.0)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from services.audit.merkle import (
    CompactRange,
    Node,
    ProofError,
    hash_leaf,
    root_of,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rfc9162"
CONSTANTS = json.loads((VECTORS / "tree-constants.json").read_text())
LEAVES = [bytes.fromhex(leaf) for leaf in CONSTANTS["leaf_inputs_hex"]]


def cases(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert files, kind
    return [
        pytest.param(json.loads(path.read_text()), id=str(path.relative_to(VECTORS)))
        for path in files
    ]


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def proof_of(case: dict[str, Any]) -> list[bytes]:
    return [b64(item) for item in case["proof"] or []]


def outcome(check, *arguments) -> bool:
    """True when the proof verifies, False when it is rejected."""
    try:
        check(*arguments)
    except ProofError:
        return True
    return False


@pytest.mark.parametrize("size", range(len(CONSTANTS["root_hashes_hex"])))
def test_root_of_the_first_n_leaves(size: int) -> None:
    expected = bytes.fromhex(CONSTANTS["root_hashes_hex"][size])
    assert root_of(hash_leaf(leaf) for leaf in LEAVES[:size]) == expected


def test_every_complete_node_hash() -> None:
    tree = CompactRange()
    stored: dict[Node, bytes] = {}
    for leaf in LEAVES:
        stored.update(tree.append(hash_leaf(leaf)))
    for level, hashes in enumerate(CONSTANTS["node_hashes_hex"]):
        for index, expected in enumerate(hashes):
            assert stored[Node(level, index)].hex() == expected
    for size in range(1, len(LEAVES) + 1):
        expected = bytes.fromhex(CONSTANTS["root_hashes_hex"][size])
        assert subtree_hash(0, size, stored.__getitem__) == expected


@pytest.mark.parametrize("case", cases("inclusion"))
def test_inclusion(case: dict[str, Any]) -> None:
    rejected = outcome(
        verify_inclusion,
        case["leafIdx"],
        case["treeSize"],
        b64(case["leafHash"]),
        proof_of(case),
        b64(case["root"]),
    )
    assert rejected == case["wantErr"], case["desc"]


@pytest.mark.parametrize("case", cases("consistency"))
def test_consistency(case: dict[str, Any]) -> None:
    rejected = outcome(
        verify_consistency,
        case["size1"],
        case["size2"],
        proof_of(case),
        b64(case["root1"]),
        b64(case["root2"]),
    )
    assert rejected == case["wantErr"], case["desc"]


@pytest.mark.parametrize("case", cases("subtreeinclusion"))
def test_subtree_inclusion(case: dict[str, Any]) -> None:
    rejected = outcome(
        verify_subtree_inclusion,
        case["start"],
        case["end"],
        case["leafIdx"],
        b64(case["leafHash"]),
        proof_of(case),
        b64(case["root"]),
    )
    assert rejected == case["wantErr"], case["desc"]


@pytest.mark.parametrize("case", cases("subtreeconsistency"))
def test_subtree_consistency(case: dict[str, Any]) -> None:
    rejected = outcome(
        verify_subtree_consistency,
        case["start"],
        case["end"],
        case["size"],
        proof_of(case),
        b64(case["root1"]),
        b64(case["root2"]),
    )
    assert rejected == case["wantErr"], case["desc"]
