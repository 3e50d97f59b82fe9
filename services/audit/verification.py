"""Re-deriving the whole log from its leaves and judging it against signed checkpoints; pure.

The leaves stream through twice-kept compact ranges: one over the hash of each leaf's bytes as
they are now, one over the leaf hash stored when it was appended. Against a trusted checkpoint:

- the recomputed root matches: the log is the one that was signed;
- it does not, but the stored hashes rebuild the signed root: the stored hashes are authentic,
  so every leaf whose bytes no longer hash to its stored hash was changed, at exactly that index;
- neither matches: hashes were rewritten too; the earliest signed checkpoint the leaves no
  longer rebuild bounds where the change is.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.audit.merkle import CompactRange, hash_leaf
from services.audit.note import Checkpoint

MAX_LISTED = 20


@dataclass
class LogCheck:
    size: int = 0
    root: bytes = b""
    stored_root: bytes = b""
    changed: list[int] = field(default_factory=list)  # bytes no longer hash to the stored hash
    changed_count: int = 0
    gap_at: int | None = None  # first index missing from the sequence
    withheld: int = 0  # leaves whose bytes were not shown, checked by their stored hash
    roots_at: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # size: (now, stored)


class LeafChecker:
    """Takes (index, leaf bytes, stored leaf hash) in index order; keeps roots at `sizes`.

    A check may stop and go on later from `state()` (`resumed`): the log is then checked in
    pages, each carrying the two trees' borders, never all its leaves at once."""

    def __init__(self, sizes: Iterable[int] = ()) -> None:
        self._wanted = set(sizes)
        self._now, self._stored = CompactRange(), CompactRange()
        self._result = LogCheck()
        if 0 in self._wanted:
            self._result.roots_at[0] = (self._now.root(), self._stored.root())

    @property
    def size(self) -> int:
        """The leaves checked so far: the next one expected is at this index."""
        return self._now.size

    def state(self) -> dict[str, Any]:
        """Everything needed to go on, as JSON: the borders of both trees and what was seen."""
        result = self._result

        def border(tree: CompactRange) -> list[list[Any]]:
            return [[level, _b64(digest)] for level, digest in tree.border]

        return {
            "size": self._now.size,
            "now": border(self._now),
            "stored": border(self._stored),
            "changed": result.changed,
            "changed_count": result.changed_count,
            "gap_at": result.gap_at,
            "withheld": result.withheld,
            "roots_at": {
                str(at): [_b64(now), _b64(stored)] for at, (now, stored) in result.roots_at.items()
            },
        }

    @classmethod
    def resumed(cls, sizes: Iterable[int], state: Mapping[str, Any]) -> LeafChecker:
        """The check `state()` described; ValueError (ProofError) if it cannot be one."""
        checker = cls(sizes)
        size = int(state["size"])

        def border(name: str) -> CompactRange:
            return CompactRange.restored(
                size, [(int(level), base64.b64decode(digest)) for level, digest in state[name]]
            )

        checker._now, checker._stored = border("now"), border("stored")
        result = checker._result
        result.changed = [int(index) for index in state["changed"]][:MAX_LISTED]
        result.changed_count = int(state["changed_count"])
        result.gap_at = None if state["gap_at"] is None else int(state["gap_at"])
        result.withheld = int(state["withheld"])
        result.roots_at = {
            int(at): (base64.b64decode(now), base64.b64decode(stored))
            for at, (now, stored) in state["roots_at"].items()
        }
        return checker

    def add(self, index: int, leaf: bytes | None, stored_hash: bytes | None) -> bool:
        """False once the sequence has a gap: nothing after it can be placed. A leaf whose
        bytes were withheld (None: personal data, for a reader without pii:read) counts with
        its stored hash: the tree is checked, those bytes cannot be."""
        result = self._result
        if result.gap_at is not None or index != self._now.size:
            if result.gap_at is None:
                result.gap_at = self._now.size
            return False
        if leaf is not None:
            digest = hash_leaf(leaf)
        elif stored_hash is not None:
            digest = stored_hash
            result.withheld += 1
        else:
            raise ValueError(f"leaf {index} has neither bytes nor a hash")
        self._now.append(digest)
        self._stored.append(digest if stored_hash is None else stored_hash)
        if stored_hash is not None and digest != stored_hash:
            result.changed_count += 1
            if len(result.changed) < MAX_LISTED:
                result.changed.append(index)
        if self._now.size in self._wanted:
            result.roots_at[self._now.size] = (self._now.root(), self._stored.root())
        return True

    def result(self) -> LogCheck:
        result = self._result
        result.size, result.root = self._now.size, self._now.root()
        result.stored_root = self._stored.root()
        return result


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def check_leaves(
    entries: Iterable[tuple[int, bytes, bytes | None]], sizes: Iterable[int] = ()
) -> LogCheck:
    checker = LeafChecker(sizes)
    for index, leaf, stored_hash in entries:
        if not checker.add(index, leaf, stored_hash):
            break
    return checker.result()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    first_bad_index: int | None
    message: str
    details: tuple[str, ...] = ()


def judge(check: LogCheck, trusted: Checkpoint, history: Sequence[Checkpoint] = ()) -> Verdict:
    """Does the log re-derived in `check` match the trusted checkpoint? If not, where not."""
    if check.size < trusted.size:
        first = check.gap_at if check.gap_at is not None else check.size
        return Verdict(
            False,
            first,
            f"the checkpoint covers {trusted.size} leaves, the log yields only {check.size}: "
            f"leaf {first} is missing",
        )
    now, stored = check.roots_at.get(trusted.size, (b"", b""))
    if now == trusted.root_hash:
        extra: tuple[str, ...] = ()
        if check.changed:
            extra = (f"stored leaf hashes disagree with the leaves at {check.changed}",)
        return Verdict(True, None, f"all {trusted.size} leaves match the checkpoint", extra)
    within = [index for index in check.changed if index < trusted.size]
    if stored == trusted.root_hash and within:
        listed = ", ".join(map(str, within))
        return Verdict(
            False,
            within[0],
            f"leaf {within[0]} no longer matches what was signed"
            + (f" (changed leaves: {listed})" if len(within) > 1 else ""),
        )
    earlier = sorted(
        (c for c in history if c.size <= trusted.size and c.size in check.roots_at),
        key=lambda c: c.size,
    )
    good, bad = 0, trusted.size
    for checkpoint in earlier:
        if check.roots_at[checkpoint.size][0] == checkpoint.root_hash:
            good = checkpoint.size
        else:
            bad = checkpoint.size
            break
    return Verdict(
        False,
        within[0] if within else None,
        f"the leaves do not rebuild the signed root of size {trusted.size} and the stored "
        f"hashes were rewritten too; the change lies in leaves {good} to {bad - 1}",
    )
