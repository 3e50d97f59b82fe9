"""The incident lifecycle as a table of transitions; pure, no I/O.

Escalation applies it to every recorded action; intake applies the same table to the status it
knows, so a move the lifecycle refuses is refused to the caller at once (409).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.vocabulary import ACTION_NAMES_ZH, STATUS_NAMES_ZH, ActionCode
from shared.domain.vocabulary import LifecycleStatus as S

OPEN = frozenset({S.REPORTED, S.RESPONDING, S.SEARCHING, S.ESCALATED, S.CONTROLLED})


@dataclass(frozen=True)
class Move:
    """Where an action takes the incident: from `moves_from` to `to`; in `recorded_in` the
    incident is already past that point, so the action is a fact recorded late: on record, it
    meets its duties, and the status stays."""

    moves_from: frozenset[S]
    to: S | None
    recorded_in: frozenset[S] = frozenset()


TRANSITIONS: dict[ActionCode, Move] = {
    ActionCode.FIRST_RESPONSE_STARTED: Move(
        frozenset({S.REPORTED}), S.RESPONDING, OPEN - {S.REPORTED}
    ),
    ActionCode.ON_SCENE: Move(
        frozenset({S.REPORTED, S.RESPONDING, S.ESCALATED}),
        S.RESPONDING,
        frozenset({S.SEARCHING, S.CONTROLLED}),
    ),
    ActionCode.UNCONTROLLABLE: Move(frozenset({S.REPORTED, S.RESPONDING}), S.ESCALATED),
    ActionCode.SEARCH_STARTED: Move(
        frozenset({S.REPORTED, S.RESPONDING}),
        S.SEARCHING,
        frozenset({S.SEARCHING, S.ESCALATED, S.CONTROLLED}),
    ),
    # After the search window has escalated the incident, a failed search is still on record.
    ActionCode.SEARCH_FAILED: Move(frozenset({S.SEARCHING}), S.ESCALATED, frozenset({S.ESCALATED})),
    ActionCode.FOUND: Move(
        frozenset({S.SEARCHING, S.ESCALATED}), S.CONTROLLED, frozenset({S.CONTROLLED})
    ),
    ActionCode.CONTROLLED: Move(OPEN - {S.CONTROLLED}, S.CONTROLLED),
    ActionCode.CLOSED: Move(OPEN, S.CLOSED),
    ActionCode.INVESTIGATION_REPORT_FILED: Move(frozenset({S.CLOSED}), S.REVIEWED),
}

# Actions that record a fact without moving the incident: accepted while it is open.
ON_RECORD_WHILE_OPEN = Move(OPEN, None)


# timer → (states it acts in, state it leads to): R4's search window passing without FOUND.
TIMER_TRANSITIONS: dict[str, tuple[frozenset[S], S]] = {
    "SEARCH_WINDOW": (frozenset({S.REPORTED, S.RESPONDING, S.SEARCHING}), S.ESCALATED),
}
# What a fired timer means, as people read it in an incident's status reason.
TIMER_NAMES_ZH = {"SEARCH_WINDOW": "查找时限届满"}


@dataclass(frozen=True)
class Transition:
    accepted: bool
    status: S
    changed: bool
    reason: str


def apply(status: S, action: ActionCode) -> Transition:
    """Where `action` takes an incident in `status`, or why it is refused."""
    move = TRANSITIONS.get(action, ON_RECORD_WHILE_OPEN)
    said, now = f"「{ACTION_NAMES_ZH[action]}」", f"「{STATUS_NAMES_ZH[status]}」"
    if status in move.recorded_in:
        return Transition(True, status, False, f"已记录{said}，事件状态仍为{now}")
    if status not in move.moves_from:
        # Read by the party who recorded it: in words, not codes.
        return Transition(False, status, False, f"{said}不适用于事件当前状态{now}")
    if move.to is None or move.to == status:
        return Transition(True, status, False, f"已记录{said}")
    return Transition(True, move.to, True, f"{said}：{now} → 「{STATUS_NAMES_ZH[move.to]}」")


def apply_timer(status: S, timer: str) -> Transition:
    """Where a fired rule timer takes the incident; unchanged when it does not apply."""
    allowed, target = TIMER_TRANSITIONS.get(timer, (frozenset(), status))
    said = TIMER_NAMES_ZH.get(timer, timer)
    if status not in allowed or target == status:
        return Transition(True, status, False, said)
    return Transition(
        True, target, True, f"{said}：「{STATUS_NAMES_ZH[status]}」 → 「{STATUS_NAMES_ZH[target]}」"
    )


def is_open(status: S) -> bool:
    return status in OPEN
