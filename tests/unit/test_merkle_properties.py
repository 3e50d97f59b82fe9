"""The Merkle arithmetic against a plain recursive reference written from RFC 9162 §2.1."""

from __future__ import annotations

import hashlib

from hypothesis import assume, given
from hypothesis import strategies as st

from services.audit.merkle import (
    CompactRange,
    Node,
    ProofError,
    consistency_ranges,
    hash_leaf,
    inclusion_ranges,
    is_valid_subtree,
    root_of,
    subtree_consistency_ranges,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 9162 §2.1.1 writes it."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], known: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if known else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*subproof(m, leaves[:k], known), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def hashes_of(ranges: list[tuple[int, int]], leaves: list[bytes]) -> list[bytes]:
    return [mth(leaves[start:end]) for start, end in ranges]


def flip(proof: list[bytes], position: int) -> list[bytes]:
    changed = list(proof)
    item = bytearray(changed[position])
    item[0] ^= 1
    changed[position] = bytes(item)
    return changed


leaf_lists = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_root_matches_the_recursive_definition(leaves: list[bytes]) -> None:
    assert root_of(hash_leaf(leaf) for leaf in leaves) == mth(leaves)


@given(leaf_lists)
def test_every_completed_node_is_the_hash_of_its_leaves(leaves: list[bytes]) -> None:
    tree = CompactRange()
    stored: dict[Node, bytes] = {}
    for leaf in leaves:
        stored.update(tree.append(hash_leaf(leaf)))
    for node, digest in stored.items():
        assert digest == mth(leaves[node.start : node.end])
    # A compact range rebuilt from stored nodes continues exactly where the first stopped.
    resumed = CompactRange.of(len(leaves), stored.__getitem__)
    assert resumed.root() == tree.root() == mth(leaves)


@given(leaf_lists, st.data())
def test_inclusion_proofs(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof = hashes_of(inclusion_ranges(index, n), leaves)
    assert proof == path(index, leaves)
    verify_inclusion(index, n, hash_leaf(leaves[index]), proof, mth(leaves))
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        try:
            verify_inclusion(index, n, hash_leaf(leaves[index]), flip(proof, position), mth(leaves))
        except ProofError:
            pass
        else:
            raise AssertionError("a corrupted inclusion proof was accepted")
    other = data.draw(st.integers(0, n - 1))
    if leaves[other] != leaves[index]:
        try:
            verify_inclusion(other, n, hash_leaf(leaves[index]), proof, mth(leaves))
        except ProofError:
            pass
        else:
            raise AssertionError("a proof verified for the wrong index")


@given(leaf_lists, st.data())
def test_consistency_proofs(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    m = data.draw(st.integers(1, n))
    proof = hashes_of(consistency_ranges(m, n), leaves)
    assert proof == ([] if m == n else subproof(m, leaves, True))
    verify_consistency(m, n, proof, mth(leaves[:m]), mth(leaves))
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        try:
            verify_consistency(m, n, flip(proof, position), mth(leaves[:m]), mth(leaves))
        except ProofError:
            pass
        else:
            raise AssertionError("a corrupted consistency proof was accepted")


@given(leaf_lists, st.data())
def test_a_forked_tree_is_never_consistent(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    m = data.draw(st.integers(1, n))
    changed_at = data.draw(st.integers(0, m - 1))
    forked = list(leaves)
    forked[changed_at] = forked[changed_at] + b"!"
    proof = hashes_of(consistency_ranges(m, n), forked) if m < n else []
    try:
        verify_consistency(m, n, proof, mth(leaves[:m]), mth(forked))
    except ProofError:
        return
    raise AssertionError("a tree that rewrote an old leaf passed as its extension")


@given(leaf_lists, st.data())
def test_subtree_proofs(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    end = data.draw(st.integers(1, n))
    start = data.draw(st.integers(0, end - 1))
    assume(is_valid_subtree(start, end))
    sub_root = mth(leaves[start:end])
    stored: dict[Node, bytes] = {}
    tree = CompactRange()
    for leaf in leaves:
        stored.update(tree.append(hash_leaf(leaf)))
    assert subtree_hash(start, end, stored.__getitem__) == sub_root

    index = data.draw(st.integers(start, end - 1))
    inclusion = hashes_of(
        [(s + start, e + start) for s, e in inclusion_ranges(index - start, end - start)], leaves
    )
    verify_subtree_inclusion(start, end, index, hash_leaf(leaves[index]), inclusion, sub_root)

    proof = hashes_of(subtree_consistency_ranges(start, end, n), leaves)
    verify_subtree_consistency(start, end, n, proof, sub_root, mth(leaves))
    if start == 0:
        assert proof == ([] if end == n else subproof(end, leaves, True))
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        try:
            verify_subtree_consistency(start, end, n, flip(proof, position), sub_root, mth(leaves))
        except ProofError:
            pass
        else:
            raise AssertionError("a corrupted subtree proof was accepted")
