"""The incident lifecycle as a table of transitions; pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain import ACTION_NAMES_ZH, STATUS_NAMES_ZH, ActionCode
from shared.domain import LifecycleStatus as S

OPEN = frozenset({S.REPORTED, S.RESPONDING, S.SEARCHING, S.ESCALATED, S.CONTROLLED})

# action → (states it is accepted in, state it leads to; None keeps the state)
TRANSITIONS: dict[ActionCode, tuple[frozenset[S], S | None]] = {
    ActionCode.FIRST_RESPONSE_STARTED: (frozenset({S.REPORTED}), S.RESPONDING),
    ActionCode.ON_SCENE: (frozenset({S.REPORTED, S.RESPONDING, S.ESCALATED}), S.RESPONDING),
    ActionCode.UNCONTROLLABLE: (frozenset({S.REPORTED, S.RESPONDING}), S.ESCALATED),
    ActionCode.SEARCH_STARTED: (frozenset({S.REPORTED, S.RESPONDING}), S.SEARCHING),
    ActionCode.SEARCH_FAILED: (frozenset({S.SEARCHING}), S.ESCALATED),
    ActionCode.FOUND: (frozenset({S.SEARCHING, S.ESCALATED}), S.CONTROLLED),
    ActionCode.CONTROLLED: (OPEN - {S.CONTROLLED}, S.CONTROLLED),
    ActionCode.CLOSED: (OPEN, S.CLOSED),
    ActionCode.INVESTIGATION_REPORT_FILED: (frozenset({S.CLOSED}), S.REVIEWED),
}


# timer → (states it acts in, state it leads to): R4's search window passing without FOUND.
TIMER_TRANSITIONS: dict[str, tuple[frozenset[S], S]] = {
    "SEARCH_WINDOW": (frozenset({S.REPORTED, S.RESPONDING, S.SEARCHING}), S.ESCALATED),
}


@dataclass(frozen=True)
class Transition:
    accepted: bool
    status: S
    changed: bool
    reason: str


def apply(status: S, action: ActionCode) -> Transition:
    """Where `action` takes an incident in `status`, or why it is refused."""
    allowed, target = TRANSITIONS.get(action, (OPEN, None))
    if status not in allowed:
        # Read by the party who recorded it: in words, not codes.
        refused = f"「{ACTION_NAMES_ZH[action]}」不适用于事件当前状态「{STATUS_NAMES_ZH[status]}」"
        return Transition(False, status, False, refused)
    if target is None or target == status:
        return Transition(True, status, False, f"{action} recorded")
    return Transition(True, target, True, f"{action}: {status} → {target}")


def apply_timer(status: S, timer: str) -> Transition:
    """Where a fired rule timer takes the incident; unchanged when it does not apply."""
    allowed, target = TIMER_TRANSITIONS.get(timer, (frozenset(), status))
    if status not in allowed or target == status:
        return Transition(True, status, False, f"timer {timer}")
    return Transition(True, target, True, f"timer {timer}: {status} → {target}")


def is_open(status: S) -> bool:
    return status in OPEN
