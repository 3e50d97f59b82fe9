"""R20: two incidents people merged are one event. What becomes of the merged incident's open
duties, and how undoing the merge gives them back. Pure: the handlers load the duties and
store what this decides."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from services.escalation.rules import OBLIGATION_NAMESPACE, StandingDuty

OPEN = ("PENDING", "MISSED")


@dataclass(frozen=True)
class Move:
    """What a merge does to one open duty of the merged incident: MOVED, it lives on as the
    surviving incident's `counterpart` (a new obligation, `escalated_from` as it now reads);
    DOUBLED, the surviving incident has the same duty (`counterpart`) and this one is waived."""

    obligation_id: UUID
    outcome: Literal["MOVED", "DOUBLED"]
    counterpart: UUID
    status: str
    escalated_from: UUID | None = None


def moved_id(link_id: UUID, obligation_id: UUID) -> UUID:
    """The duty's id on the incident it moves to: the same merge (or its undoing) moving the
    same duty gives the same id."""
    return uuid.uuid5(OBLIGATION_NAMESPACE, f"moved/{link_id}/{obligation_id}")


def restored_id(link_id: UUID, obligation_id: UUID) -> UUID:
    return uuid.uuid5(OBLIGATION_NAMESPACE, f"restored/{link_id}/{obligation_id}")


def merge_plan(
    link_id: UUID, merged: Sequence[StandingDuty], surviving: Iterable[StandingDuty]
) -> tuple[Move, ...]:
    """The merged incident's open duties (pending or missed, oldest first), each moved to the
    surviving incident unless it already has a duty of the same rule, party and action that
    is not waived: then that one stands and this one is doubled. A supervision follows what
    it supervises (the moved duty, or the one that stands for it), and is doubled only by a
    supervision of that same duty."""
    standing = {
        (duty.rule_id, duty.party, duty.action, duty.escalated_from): duty.id
        for duty in surviving
        if duty.status != "WAIVED"
    }
    now_reads: dict[UUID, UUID] = {}
    moves: list[Move] = []
    for duty in merged:
        if duty.status not in OPEN:
            continue
        supervises = _now_read(now_reads, duty.escalated_from)
        counterpart = standing.get((duty.rule_id, duty.party, duty.action, supervises))
        if counterpart is not None:
            now_reads[duty.id] = counterpart
            moves.append(Move(duty.id, "DOUBLED", counterpart, duty.status))
            continue
        new_id = moved_id(link_id, duty.id)
        now_reads[duty.id] = new_id
        moves.append(Move(duty.id, "MOVED", new_id, duty.status, supervises))
    return tuple(moves)


def _now_read(now_reads: dict[UUID, UUID], supervised: UUID | None) -> UUID | None:
    """What a supervision points at once the duty it supervises moved or was given back."""
    return now_reads.get(supervised, supervised) if supervised is not None else None


@dataclass(frozen=True)
class MoveMade:
    """A move as the merge recorded it, and where things stand now: the status of the moved
    duty's counterpart on the surviving incident (MOVED), and what the duty's own supervision
    pointed at on the merged incident before the merge."""

    obligation_id: UUID
    outcome: Literal["MOVED", "DOUBLED"]
    counterpart: UUID
    status_when_merged: str
    counterpart_status: str
    escalated_from: UUID | None = None


@dataclass(frozen=True)
class Restoration:
    """One duty given back to the merged incident: a new obligation `new_id`, a copy of
    `copy_of` (moved from it) with `status`; `withdraw`: `copy_of` is waived, moved back."""

    new_id: UUID
    copy_of: UUID
    status: str
    withdraw: bool
    escalated_from: UUID | None = None


def restorations(link_id: UUID, made: Sequence[MoveMade]) -> tuple[Restoration, ...]:
    """Undoing a merge: a moved duty still open on the surviving incident moves back (met
    there, it stays met: history is not rewritten); a doubled duty, waived on the merged
    incident, is created there again, as it stood when merged. Supervisions point at the
    duties given back."""
    now_reads: dict[UUID, UUID] = {}
    given_back: list[Restoration] = []
    for move in made:
        if move.outcome == "MOVED":
            if move.counterpart_status not in OPEN:
                continue
            copy_of, status, withdraw = move.counterpart, move.counterpart_status, True
        else:
            copy_of, status, withdraw = move.obligation_id, move.status_when_merged, False
        new_id = restored_id(link_id, copy_of)
        now_reads[move.obligation_id] = new_id
        given_back.append(
            Restoration(
                new_id, copy_of, status, withdraw, _now_read(now_reads, move.escalated_from)
            )
        )
    return tuple(given_back)
