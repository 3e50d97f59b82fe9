"""The incident lifecycle table (services/escalation/lifecycle.py)."""

from __future__ import annotations

import pytest

from services.escalation.lifecycle import OPEN, TRANSITIONS, apply
from shared.domain import ActionCode as A
from shared.domain import LifecycleStatus as S

ACCEPTED = [
    # (state, action, new state)
    (S.REPORTED, A.FIRST_RESPONSE_STARTED, S.RESPONDING),  # R1 先期处置
    (S.REPORTED, A.ON_SCENE, S.RESPONDING),
    (S.ESCALATED, A.ON_SCENE, S.RESPONDING),
    (S.REPORTED, A.UNCONTROLLABLE, S.ESCALATED),  # R2
    (S.RESPONDING, A.UNCONTROLLABLE, S.ESCALATED),
    (S.REPORTED, A.SEARCH_STARTED, S.SEARCHING),  # R3
    (S.RESPONDING, A.SEARCH_STARTED, S.SEARCHING),
    (S.SEARCHING, A.SEARCH_FAILED, S.ESCALATED),  # R4
    (S.SEARCHING, A.FOUND, S.CONTROLLED),
    (S.ESCALATED, A.FOUND, S.CONTROLLED),
    (S.REPORTED, A.CONTROLLED, S.CONTROLLED),
    (S.RESPONDING, A.CONTROLLED, S.CONTROLLED),
    (S.SEARCHING, A.CONTROLLED, S.CONTROLLED),
    (S.ESCALATED, A.CONTROLLED, S.CONTROLLED),
    (S.REPORTED, A.CLOSED, S.CLOSED),
    (S.CONTROLLED, A.CLOSED, S.CLOSED),
    (S.ESCALATED, A.CLOSED, S.CLOSED),
    (S.CLOSED, A.INVESTIGATION_REPORT_FILED, S.REVIEWED),  # R14
]

REFUSED = [
    (S.REPORTED, A.SEARCH_FAILED),
    (S.RESPONDING, A.SEARCH_FAILED),
    (S.RESPONDING, A.FIRST_RESPONSE_STARTED),
    (S.REPORTED, A.FOUND),
    (S.SEARCHING, A.UNCONTROLLABLE),
    (S.CONTROLLED, A.CONTROLLED),
    (S.CONTROLLED, A.ON_SCENE),
    (S.REPORTED, A.INVESTIGATION_REPORT_FILED),
    (S.CONTROLLED, A.INVESTIGATION_REPORT_FILED),
    (S.REVIEWED, A.INVESTIGATION_REPORT_FILED),
    (S.REVIEWED, A.REPORTED),
]


@pytest.mark.parametrize(("status", "action", "target"), ACCEPTED)
def test_accepted_transitions(status, action, target):
    result = apply(status, action)
    assert result.accepted
    assert result.changed
    assert result.status is target
    assert result.reason == f"{action}: {status} → {target}"


@pytest.mark.parametrize(("status", "action"), REFUSED)
def test_refused_transitions_keep_the_state_and_say_why(status, action):
    result = apply(status, action)
    assert not result.accepted
    assert not result.changed
    assert result.status is status
    assert result.reason == f"{action} 不适用于状态 {status}"


def test_search_failed_in_reported_is_refused_with_a_reason():
    """R4 needs a search first: SEARCH_FAILED makes no sense before SEARCH_STARTED."""
    result = apply(S.REPORTED, A.SEARCH_FAILED)
    assert (result.accepted, result.status) == (False, S.REPORTED)
    assert result.reason == "SEARCH_FAILED 不适用于状态 REPORTED"


@pytest.mark.parametrize("action", [a for a in A if a is not A.INVESTIGATION_REPORT_FILED])
def test_closed_incident_refuses_every_action_but_the_investigation_report(action):
    """After closure only R14's investigation report moves the incident on."""
    result = apply(S.CLOSED, action)
    assert not result.accepted
    assert result.status is S.CLOSED


@pytest.mark.parametrize("action", [a for a in A if a not in TRANSITIONS])
@pytest.mark.parametrize("status", sorted(OPEN))
def test_action_without_transition_is_recorded_and_keeps_an_open_state(status, action):
    """E.g. POLICE_CALLED (R6) or REPORTED: on record, state unchanged."""
    result = apply(status, action)
    assert result.accepted
    assert not result.changed
    assert result.status is status
    assert result.reason == f"{action} recorded"


def test_on_scene_while_responding_is_accepted_without_change():
    result = apply(S.RESPONDING, A.ON_SCENE)
    assert (result.accepted, result.changed, result.status) == (True, False, S.RESPONDING)
    assert result.reason == "ON_SCENE recorded"


def test_terminal_states_are_not_open():
    assert S.CLOSED not in OPEN
    assert S.REVIEWED not in OPEN
    assert OPEN | {S.CLOSED, S.REVIEWED} == set(S)
