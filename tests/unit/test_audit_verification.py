"""Re-deriving the log and judging it against checkpoints (services/audit/verification.py),
when checkpoints are signed (checkpoints.needs_checkpoint) and what a witness accepts."""

from __future__ import annotations

import json

import pytest

from services.audit.checkpoints import first_checkpoint_refusal, needs_checkpoint
from services.audit.merkle import CompactRange, ProofError, consistency_ranges, hash_leaf, root_of
from services.audit.note import Checkpoint
from services.audit.verification import LeafChecker, check_leaves, judge
from services.audit.witness import Refusal, check_growth
from tests.unit.test_merkle_properties import hashes_of

LEAVES = [f'{{"n":{n}}}'.encode() for n in range(20)]


def checkpoint(size: int, leaves: list[bytes] = LEAVES) -> Checkpoint:
    return Checkpoint("log.example", size, root_of(hash_leaf(leaf) for leaf in leaves[:size]))


def entries(leaves: list[bytes], stored: list[bytes] | None = None):
    stored = stored or [hash_leaf(leaf) for leaf in leaves]
    return [(i, leaf, stored[i]) for i, leaf in enumerate(leaves)]


def test_an_intact_log_matches_its_checkpoint() -> None:
    trusted = checkpoint(20)
    verdict = judge(check_leaves(entries(LEAVES), [20]), trusted)
    assert verdict.ok and verdict.first_bad_index is None


def test_a_changed_leaf_is_named_exactly_when_the_stored_hashes_are_authentic() -> None:
    tampered = list(LEAVES)
    tampered[7] = b'{"n":"forged"}'
    stored = [hash_leaf(leaf) for leaf in LEAVES]
    verdict = judge(check_leaves(entries(tampered, stored), [20]), checkpoint(20))
    assert not verdict.ok and verdict.first_bad_index == 7
    assert "leaf 7 no longer matches" in verdict.message


def test_rewritten_stored_hashes_leave_the_signed_history_to_bound_the_change() -> None:
    tampered = list(LEAVES)
    tampered[11] = b'{"n":"forged"}'
    history = [checkpoint(size) for size in (4, 8, 12, 16)]
    check = check_leaves(entries(tampered), [20, *(c.size for c in history)])
    verdict = judge(check, checkpoint(20), history)
    assert not verdict.ok
    assert "the change lies in leaves 8 to 11" in verdict.message


def test_a_removed_leaf_is_named_by_the_gap() -> None:
    remaining = [item for item in entries(LEAVES) if item[0] != 5]
    verdict = judge(check_leaves(remaining, [20]), checkpoint(20))
    assert not verdict.ok and verdict.first_bad_index == 5


def test_a_shorter_log_than_the_checkpoint_fails() -> None:
    verdict = judge(check_leaves(entries(LEAVES[:15]), [20]), checkpoint(20))
    assert not verdict.ok and verdict.first_bad_index == 15


@pytest.mark.parametrize(
    ("last", "size", "others", "expected"),
    [
        (None, 0, False, False),
        (None, 3, False, True),
        (3, 3, True, False),
        (3, 4, False, False),  # only its own checkpoint leaf came back
        (3, 5, True, True),
    ],
)
def test_when_a_checkpoint_is_signed(last, size, others, expected) -> None:
    assert needs_checkpoint(last, size, others) is expected


@pytest.mark.parametrize(
    ("existing", "size", "confirmed", "refused"),
    [
        (0, 7, None, False),  # a new log: its leaves were appended by the service itself
        (5, 5, None, True),  # an existing log: never signed on trust
        (5, 9, 6, False),  # the first checkpoint covers the 6 confirmed leaves
        (5, 5, 6, True),  # the operator expects a leaf the log does not hold
    ],
)
def test_the_first_checkpoint_of_an_existing_log_waits_for_the_operator(
    existing: int, size: int, confirmed: int | None, refused: bool
) -> None:
    assert (first_checkpoint_refusal(existing, size, confirmed) is not None) is refused


def test_the_witness_accepts_growth_and_refuses_forks_and_rollbacks() -> None:
    old, new = checkpoint(8), checkpoint(13)
    proof = hashes_of(consistency_ranges(8, 13), LEAVES[:13])
    check_growth(None, old, [])
    check_growth(old, new, proof)
    check_growth(new, new, [])
    forked = list(LEAVES)
    forked[2] = b"x"
    with pytest.raises(Refusal, match="not an extension"):
        check_growth(old, checkpoint(13, forked), hashes_of(consistency_ranges(8, 13), forked))
    with pytest.raises(Refusal, match="shrank"):
        check_growth(new, old, [])
    with pytest.raises(Refusal):
        check_growth(new, checkpoint(13, forked), [])
    with pytest.raises(Refusal, match="follows"):
        check_growth(old, Checkpoint("other.example", 13, new.root_hash), proof)


def test_a_check_in_pages_goes_on_where_the_last_page_stopped() -> None:
    """Each page carries the borders of both trees; the pages together judge as one pass."""
    tampered = list(LEAVES)
    tampered[13] = b"changed"
    entries = [(index, leaf, hash_leaf(LEAVES[index])) for index, leaf in enumerate(tampered)]
    whole = check_leaves(entries, [16])
    checker = LeafChecker([16])
    for start in range(0, len(entries), 6):
        checker = LeafChecker.resumed([16], json.loads(json.dumps(checker.state())))
        for entry in entries[start : start + 6]:
            checker.add(*entry)
    paged = checker.result()
    assert (paged.root, paged.stored_root, paged.changed, paged.roots_at) == (
        whole.root,
        whole.stored_root,
        whole.changed,
        whole.roots_at,
    )
    assert judge(paged, checkpoint(16)).first_bad_index == 13


def test_a_withheld_leaf_counts_by_its_stored_hash() -> None:
    entries = [
        (index, None if index % 3 == 0 else leaf, hash_leaf(leaf))
        for index, leaf in enumerate(LEAVES)
    ]
    check = check_leaves(entries, [20])
    assert check.withheld == 7 and judge(check, checkpoint(20)).ok


def test_a_border_that_cannot_be_the_trees_is_refused() -> None:
    tree = CompactRange()
    for leaf in LEAVES[:5]:
        tree.append(hash_leaf(leaf))
    assert CompactRange.restored(5, tree.border).root() == tree.root()
    with pytest.raises(ProofError):
        CompactRange.restored(6, tree.border)
