"""The incident lifecycle table (shared/domain/lifecycle.py)."""

from __future__ import annotations

import pytest

from shared.domain.lifecycle import (
    OPEN,
    TIMER_TRANSITIONS,
    TRANSITIONS,
    apply,
    apply_timer,
    is_open,
)
from shared.domain.vocabulary import ACTION_NAMES_ZH, STATUS_NAMES_ZH
from shared.domain.vocabulary import ActionCode as A
from shared.domain.vocabulary import LifecycleStatus as S

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
    (S.REPORTED, A.FOUND),
    (S.SEARCHING, A.UNCONTROLLABLE),
    (S.CONTROLLED, A.CONTROLLED),
    (S.CONTROLLED, A.UNCONTROLLABLE),
    (S.CLOSED, A.CLOSED),
    (S.CLOSED, A.ON_SCENE),
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
    moved = f"「{STATUS_NAMES_ZH[status]}」 → 「{STATUS_NAMES_ZH[target]}」"
    assert result.reason == f"「{ACTION_NAMES_ZH[action]}」：{moved}"


@pytest.mark.parametrize(("status", "action"), REFUSED)
def test_refused_transitions_keep_the_state_and_say_why(status, action):
    result = apply(status, action)
    assert not result.accepted
    assert not result.changed
    assert result.status is status
    assert result.reason == (
        f"「{ACTION_NAMES_ZH[action]}」不适用于事件当前状态「{STATUS_NAMES_ZH[status]}」"
    )


def test_search_failed_in_reported_is_refused_with_a_reason():
    """R4 needs a search first: SEARCH_FAILED makes no sense before SEARCH_STARTED."""
    result = apply(S.REPORTED, A.SEARCH_FAILED)
    assert (result.accepted, result.status) == (False, S.REPORTED)
    assert result.reason == "「查找未果」不适用于事件当前状态「已报告」"


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
    assert result.reason == f"已记录「{ACTION_NAMES_ZH[action]}」"


# Facts recorded after the incident has moved past them (officers record after the fact).
LATE = [
    (S.CONTROLLED, A.ON_SCENE),
    (S.SEARCHING, A.ON_SCENE),
    (S.RESPONDING, A.FIRST_RESPONSE_STARTED),
    (S.CONTROLLED, A.FIRST_RESPONSE_STARTED),
    (S.ESCALATED, A.SEARCH_STARTED),
    (S.CONTROLLED, A.SEARCH_STARTED),
    (S.ESCALATED, A.SEARCH_FAILED),
    (S.CONTROLLED, A.FOUND),
]


@pytest.mark.parametrize(("status", "action"), LATE)
def test_a_fact_recorded_late_is_accepted_and_only_the_status_move_is_not(status, action):
    """CONTROLLED, then ON_SCENE recorded after the fact: the action stands (it meets
    GO_ON_SCENE, R6); the incident does not go back to RESPONDING."""
    result = apply(status, action)
    assert (result.accepted, result.changed, result.status) == (True, False, status)
    assert result.reason == (
        f"已记录「{ACTION_NAMES_ZH[action]}」，事件状态仍为「{STATUS_NAMES_ZH[status]}」"
    )


@pytest.mark.parametrize("action", sorted(TRANSITIONS))
def test_nothing_is_recorded_late_on_a_closed_incident(action):
    for status in (S.CLOSED, S.REVIEWED):
        assert status not in TRANSITIONS[action].recorded_in


def test_on_scene_while_responding_is_accepted_without_change():
    result = apply(S.RESPONDING, A.ON_SCENE)
    assert (result.accepted, result.changed, result.status) == (True, False, S.RESPONDING)
    assert result.reason == "已记录「已到现场」"


def test_terminal_states_are_not_open():
    assert S.CLOSED not in OPEN
    assert S.REVIEWED not in OPEN
    assert OPEN | {S.CLOSED, S.REVIEWED} == set(S)


# --- rule timers (R3 starts SEARCH_WINDOW; R4 acts when it passes) ----------------------------


@pytest.mark.parametrize("status", [S.REPORTED, S.RESPONDING, S.SEARCHING])
def test_search_window_passing_escalates_an_incident_still_looking(status):
    """R4: the search window passes without FOUND — as if the search had failed."""
    result = apply_timer(status, "SEARCH_WINDOW")
    assert (result.accepted, result.changed, result.status) == (True, True, S.ESCALATED)
    assert result.reason == f"查找时限届满：「{STATUS_NAMES_ZH[status]}」 → 「已升级」"


@pytest.mark.parametrize("status", [S.ESCALATED, S.CONTROLLED, S.CLOSED, S.REVIEWED])
def test_search_window_leaves_an_escalated_found_or_closed_incident_alone(status):
    result = apply_timer(status, "SEARCH_WINDOW")
    assert (result.accepted, result.changed, result.status) == (True, False, status)
    assert result.reason == "查找时限届满"


@pytest.mark.parametrize("status", list(S))
def test_an_unknown_timer_changes_nothing(status):
    result = apply_timer(status, "COFFEE_BREAK")
    assert (result.accepted, result.changed, result.status) == (True, False, status)
    assert result.reason == "COFFEE_BREAK"


def test_search_window_ends_where_a_failed_search_does():
    """The timer and SEARCH_FAILED both trigger R4; they lead to the same state."""
    timed_out = apply_timer(S.SEARCHING, "SEARCH_WINDOW")
    assert timed_out.status is apply(S.SEARCHING, A.SEARCH_FAILED).status


def test_every_lifecycle_timer_is_a_timer_of_the_policy(policy):
    for name in TIMER_TRANSITIONS:
        timer = policy.timer(name)
        assert timer.name == name
        # Whatever cancels the timer is also what stops it mattering to the lifecycle.
        for action in timer.cancelled_by:
            after = apply(S.SEARCHING, action)
            if after.accepted:
                assert not apply_timer(after.status, name).changed


@pytest.mark.parametrize("status", list(S))
def test_is_open_until_closed(status):
    assert is_open(status) is (status not in {S.CLOSED, S.REVIEWED})
    assert is_open(status) is (status in OPEN)
