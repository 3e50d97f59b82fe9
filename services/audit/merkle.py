"""RFC 9162 Merkle tree arithmetic: hashes, compact ranges, proofs and their verification; pure.

Leaves are hashed with the prefix 0x00, interior nodes with 0x01, and a tree of n leaves splits
at the largest power of two smaller than n (RFC 9162 §2.1.1). A *complete node* `Node(level,
index)` is the root of the 2**level leaves starting at `index << level`; every hash a root or a
proof needs is built from complete nodes, which is what the store keeps. Subtrees [start, end)
follow draft-ietf-plants-merkle-tree-certs §4.1 (start a multiple of BIT_CEIL(end - start)).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]


class ProofError(ValueError):
    """A proof that does not prove what it claims, or arguments no proof can satisfy."""


def hash_leaf(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(size: int) -> int:
    """The largest power of two smaller than `size` (size >= 2): where RFC 9162 splits."""
    return 1 << ((size - 1).bit_length() - 1)


def bit_ceil(value: int) -> int:
    return 1 if value <= 1 else 1 << (value - 1).bit_length()


def is_valid_subtree(start: int, end: int) -> bool:
    return 0 <= start <= end and start % bit_ceil(end - start) == 0


@dataclass(frozen=True, order=True)
class Node:
    """The complete subtree of 2**level leaves starting at leaf `index << level`."""

    level: int
    index: int

    @property
    def start(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


def range_nodes(start: int, end: int) -> list[Node]:
    """[start, end) as maximal complete nodes, left to right (its compact range)."""
    nodes = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while 1 << level > end - start:
            level -= 1
        nodes.append(Node(level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Hash of a valid subtree from its compact range: right to left, as the RFC splits."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = hash_children(left, result)
    return result


def subtree_hash(start: int, end: int, node_hash: Callable[[Node], bytes]) -> bytes:
    """MTH(D[start:end]) of a valid subtree, from the complete nodes `node_hash` knows."""
    return fold([node_hash(node) for node in range_nodes(start, end)])


def nodes_for(ranges: Iterable[Range]) -> set[Node]:
    """The complete nodes whose hashes make up the given ranges."""
    return {node for start, end in ranges for node in range_nodes(start, end)}


@dataclass
class CompactRange:
    """The right border of a growing tree: enough to append and to compute the root.

    `append` returns every complete node the new leaf completes, so a store can keep them.
    """

    size: int = 0
    _stack: list[tuple[int, bytes]] = field(default_factory=list)

    @classmethod
    def of(cls, size: int, node_hash: Callable[[Node], bytes]) -> CompactRange:
        return cls(size, [(node.level, node_hash(node)) for node in range_nodes(0, size)])

    @property
    def border(self) -> list[tuple[int, bytes]]:
        """(level, hash) of the right border, left to right: `restored` takes it back."""
        return list(self._stack)

    @classmethod
    def restored(cls, size: int, border: Sequence[tuple[int, bytes]]) -> CompactRange:
        """The range `border` describes; ProofError if it cannot be the border of `size`."""
        if [level for level, _ in border] != [node.level for node in range_nodes(0, size)]:
            raise ProofError(f"not the border of a tree of size {size}")
        return cls(size, list(border))

    def append(self, leaf_hash: bytes) -> list[tuple[Node, bytes]]:
        digest, level = leaf_hash, 0
        self.size += 1
        created = [(Node(0, self.size - 1), digest)]
        while self._stack and self._stack[-1][0] == level:
            _, left = self._stack.pop()
            digest, level = hash_children(left, digest), level + 1
            created.append((Node(level, (self.size >> level) - 1), digest))
        self._stack.append((level, digest))
        return created

    def root(self) -> bytes:
        return fold([digest for _, digest in self._stack])


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    tree = CompactRange()
    for digest in leaf_hashes:
        tree.append(digest)
    return tree.root()


# --- proofs: which subtree hashes make them up ------------------------------------------------


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """RFC 9162 §2.1.3.1 PATH(index, D[size]) as subtree ranges, from the leaf up."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    path: list[Range] = []
    low, high = 0, size
    while high - low > 1:
        k = split_point(high - low)
        if index < low + k:
            path.append((low + k, high))
            high = low + k
        else:
            path.append((low, low + k))
            low += k
    return path[::-1]


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """RFC 9162 §2.1.4.1 PROOF(old_size, D[new_size]) as subtree ranges."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from {old_size} to {new_size}")
    return subtree_consistency_ranges(0, old_size, new_size)


def subtree_consistency_ranges(start: int, end: int, size: int) -> list[Range]:
    """The subtree [start, end) is part of the tree of `size` leaves: SUBPROOF generalised."""
    if not (is_valid_subtree(start, end) and start < end <= size):
        raise ProofError(f"[{start}, {end}) is not a subtree of a tree of size {size}")
    proof: list[Range] = []
    low, high, known = 0, size, True
    while not (start == low and end == high):
        k = split_point(high - low)
        if end <= low + k:
            proof.append((low + k, high))
            high = low + k
        elif start >= low + k:
            proof.append((low, low + k))
            low += k
        else:  # only a prefix [low, end) straddles the split; its right part is not a node
            proof.append((low, low + k))
            low, known = low + k, False
            start = low
    if not known:
        proof.append((low, high))
    return proof[::-1]


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ---------------------------------------------


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} has {len(value)} bytes, not {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    _check_hash("leaf hash", leaf_hash)
    fn, sn, result = index, size - 1, leaf_hash
    for sibling in proof:
        if sn == 0:
            raise ProofError("proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            result = hash_children(sibling, result)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            result = hash_children(result, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("proof is shorter than the tree is deep")
    return result


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    if root_from_inclusion(index, size, leaf_hash, proof) != root:
        raise ProofError(f"leaf {index} is not in the tree of size {size} with this root")


def verify_subtree_inclusion(
    start: int, end: int, index: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """The leaf is in the subtree [start, end) whose hash is `root`."""
    if not (is_valid_subtree(start, end) and start <= index < end):
        raise ProofError(f"leaf {index} is not in a valid subtree [{start}, {end})")
    verify_inclusion(index - start, end - start, leaf_hash, proof, root)


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    if old_size == new_size:
        if proof:
            raise ProofError("equal trees need no proof")
        if old_root != new_root:
            raise ProofError("equal sizes but different roots")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise ProofError("the empty tree has the empty hash")
        return
    if old_size == 0:
        # Every tree extends the empty one: such a "proof" proves nothing, so none is accepted.
        raise ProofError("a consistency proof from the empty tree is meaningless")
    verify_subtree_consistency(0, old_size, new_size, proof, old_root, new_root)


def verify_subtree_consistency(
    start: int,
    end: int,
    size: int,
    proof: Sequence[bytes],
    subtree_root: bytes,
    root: bytes,
) -> None:
    """The subtree [start, end) with hash `subtree_root` is part of the tree `root` of `size`."""
    if not is_valid_subtree(start, end) or end > size:
        raise ProofError(f"[{start}, {end}) is not a subtree of a tree of size {size}")
    if start == end:
        # The empty subtree is in every tree; only its own hash can be wrong.
        if proof or subtree_root != EMPTY_ROOT:
            raise ProofError("the empty subtree has the empty hash and no proof")
        return
    if start == 0 and end == size:
        if proof:
            raise ProofError("equal trees need no proof")
        if subtree_root != root:
            raise ProofError("equal sizes but different roots")
        return
    if not proof:
        raise ProofError("empty proof")
    # Walk from the node holding the subtree's last leaf up to the root. Left siblings below
    # the subtree's own top level lie inside it and rebuild its hash; those above lie left of it.
    top = bit_ceil(end - start).bit_length() - 1
    if end - start == 1 << top or end == size:
        # The subtree is itself a node of the tree (complete, or on its right border).
        level, first, rest = top, subtree_root, list(proof)
        fn = start >> top
    else:
        # The proof starts with the largest complete node that ends the subtree.
        level = ((end - start) & -(end - start)).bit_length() - 1
        first, rest = proof[0], list(proof[1:])
        fn = (end - 1) >> level
    second, sn = first, (size - 1) >> level
    for sibling in rest:
        _check_hash("proof hash", sibling)
        if sn == 0:
            raise ProofError("proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            while not fn & 1 and fn != 0:
                fn, sn, level = fn >> 1, sn >> 1, level + 1
            if level < top:
                first = hash_children(sibling, first)
            second = hash_children(sibling, second)
        else:
            second = hash_children(second, sibling)
        fn, sn, level = fn >> 1, sn >> 1, level + 1
    if sn != 0:
        raise ProofError("proof is shorter than the tree is deep")
    if first != subtree_root:
        raise ProofError("proof does not rebuild the earlier root")
    if second != root:
        raise ProofError("proof does not rebuild the later root")
