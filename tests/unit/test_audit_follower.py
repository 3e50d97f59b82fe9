"""The findings follower's decisions (services/audit/follower.py), without a database: which
incidents new leaves touch, over which history each is reviewed, and where a failing review
stops the cursor."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from services.audit.findings import FindingRules, LoggedEvent, compute
from services.audit.follower import (
    FIRST_RETRY_SECONDS,
    FollowerHealth,
    LeafHeader,
    StoredLeaf,
    incidents_touched,
    review_leaves,
    with_their_events,
)
from services.audit.leaves import canonical_json
from services.audit.linking import joined_incidents
from services.audit.logged import Read, events_of
from shared.events.models import AccountabilityFinding
from tests.unit.test_audit_findings import ABSCONDING, COUNTY

T0 = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
A, B, C = (uuid.UUID(int=n) for n in (1, 2, 3))


class Log:
    """A whole log as the follower reads it: a header per leaf, the leaves by incident."""

    def __init__(self) -> None:
        self.headers: list[LeafHeader] = []
        self.stored: dict[uuid.UUID, list[StoredLeaf]] = {}

    def add(self, incident: uuid.UUID | str, ce_type: str, **data: Any) -> int:
        index = len(self.headers)
        leaf = canonical_json(
            {
                "id": str(uuid.uuid4()),
                "type": ce_type,
                "time": (T0 + timedelta(seconds=index)).isoformat(),
                "data": {"incident_id": str(incident), **data},
            }
        )
        self.headers.append(LeafHeader(index, ce_type, str(incident)))
        if isinstance(incident, uuid.UUID):
            self.stored.setdefault(incident, []).append((index, leaf))
        return index

    def reported(self, incident: uuid.UUID, discovered_hours_before: float = 0) -> int:
        return self.add(
            incident,
            "incident.reported",
            facts={
                "category": "ABSCONDED",
                "phase": "OCCURRED",
                "township_code": "150626102",
                "subjects": [{"id": "S1", "name": "王某某"}],
                "discovered_at": (T0 - timedelta(hours=discovered_hours_before)).isoformat(),
            },
            reporter={"party": "SFS:150626102", "name": "李明"},
            reported_at=T0.isoformat(),
        )

    @property
    def histories(self) -> dict[uuid.UUID, list[Read]]:
        """The histories as the follower reviews them, each leaf read once."""
        return events_of(self.stored)

    def from_(self, position: int) -> list[LeafHeader]:
        return self.headers[position:]


class Recorder:
    """A findings function that remembers what it was asked, and fails for some incidents."""

    def __init__(self, failing: set[uuid.UUID] = frozenset()) -> None:  # type: ignore[assignment]
        self.seen: dict[uuid.UUID, list[int]] = {}
        self.failing = failing

    def __call__(
        self, incident_id: uuid.UUID, events: Sequence[LoggedEvent]
    ) -> list[AccountabilityFinding]:
        self.seen[incident_id] = [event.index for event in events]
        if incident_id in self.failing:
            raise KeyError("facts")
        return []


def test_only_leaves_about_an_incident_that_findings_read_touch_it() -> None:
    log = Log()
    log.reported(A)
    log.add("log", "audit.checkpoint")
    log.add(B, "notification.delivered")
    log.add(B, "obligation.created")
    log.add("not-an-incident", "obligation.created")
    log.add(A, "incident.action_recorded")
    assert incidents_touched(log.headers) == {A: 0, B: 3}


def test_r9_and_r11_signals_touch_an_incident_and_a_deadline_passing_does_not() -> None:
    log = Log()
    log.add(A, "deadline.missed")  # no finding of its own: the duty may yet be done
    log.add(B, "obligation.omitted")
    log.add(A, "incident.went_quiet")
    assert incidents_touched(log.headers) == {B: 1, A: 2}


def test_each_incident_is_reviewed_once_over_its_log_up_to_the_last_new_leaf() -> None:
    log = Log()
    log.reported(A)
    log.reported(B)
    log.add(A, "incident.action_recorded")
    log.add(C, "incident.reported")
    recorder = Recorder()
    # The follower read up to leaf 2; leaf 3 was appended after.
    review = review_leaves(1, log.headers[1:3], log.histories, recorder)
    assert review.cursor == 3 and review.stop is None
    assert list(review.findings) == [B, A]
    assert recorder.seen == {B: [1], A: [0, 2]}  # A's leaf 0 counts, C's leaf 3 not yet


def test_a_failing_review_stops_the_cursor_at_the_first_leaf_of_its_incident() -> None:
    log = Log()
    log.reported(A)  # 0
    log.add("log", "audit.checkpoint")  # 1
    log.reported(B)  # 2
    log.add(A, "obligation.created")  # 3
    log.reported(C)  # 4
    recorder = Recorder(failing={B})
    review = review_leaves(0, log.from_(0), log.histories, recorder)
    assert review.cursor == 2
    assert review.stop is not None and review.stop.index == 2 and review.stop.incident_id == B
    assert review.stop.reason == "KeyError: 'facts'"
    assert list(review.findings) == [A]  # reviewed before B: kept
    assert C not in recorder.seen  # after B: waits for B's fix

    # The next pass begins at B's leaf and stops there again, until the code is fixed.
    again = review_leaves(2, log.from_(2), log.histories, recorder)
    assert again.cursor == 2 and again.stop is not None and not again.findings
    recorder.failing = set()
    fixed = review_leaves(2, log.from_(2), log.histories, recorder)
    assert fixed.cursor == 5 and fixed.stop is None
    assert list(fixed.findings) == [B, A, C]


def test_a_leaf_findings_cannot_read_stops_the_follower_too() -> None:
    log = Log()
    log.reported(A)
    log.stored[A] = [(0, b"not json")]
    review = review_leaves(0, log.from_(0), log.histories, Recorder())
    assert review.cursor == 0 and review.stop is not None
    assert review.stop.reason.startswith("JSONDecodeError")


def test_leaves_must_follow_on_from_the_cursor() -> None:
    log = Log()
    log.reported(A)
    log.reported(B)
    with pytest.raises(ValueError, match="gap"):
        review_leaves(0, log.headers[1:], log.histories, Recorder())


def test_the_same_leaves_reviewed_twice_give_the_same_finding_ids() -> None:
    """Why a retried or repeated pass never stores or publishes a finding twice."""
    log = Log()
    log.reported(A, discovered_hours_before=3)  # R12: reported 3 h after discovery
    rules = partial(compute, rules=FindingRules(timedelta(hours=1), zone=COUNTY))
    first = review_leaves(0, log.from_(0), log.histories, rules)
    second = review_leaves(0, log.from_(0), log.histories, rules)
    (finding,) = first.findings[A]
    assert finding.rule_id == "R12" and finding.evidence_log_indexes == (0,)
    assert [f.finding_id for f in second.findings[A]] == [finding.finding_id]


def test_health_says_where_and_why_the_follower_stopped_and_clears_when_it_moves() -> None:
    log = Log()
    log.reported(A)
    health = FollowerHealth()
    assert health.readiness() == "ok"
    failing = review_leaves(0, log.from_(0), log.histories, Recorder(failing={A}))
    health.record(failing)
    health.record(failing)
    detail = health.readiness()
    assert detail.startswith("stopped at leaf 0 (incident 00000000-0000-0000-0000-000000000001)")
    assert "2 attempt(s): KeyError: 'facts'" in detail
    for attempts in range(3, 15):
        health.record(failing)
        assert health.attempts == attempts
        # Doubling, capped at 5 s; jitter at most halves a pause.
        longest = min(FIRST_RETRY_SECONDS * 2 ** (attempts - 1), 5.0)
        assert longest / 2 <= health.retry_delay(5.0) <= longest
    health.record(review_leaves(0, log.from_(0), log.histories, Recorder()))
    assert health.readiness() == "ok" and health.attempts == 0


def leaf_of(index: int, incident: uuid.UUID, ce_type: str, **data: Any) -> StoredLeaf:
    """A stored leaf as audit appends it, with the incident it was published under."""
    return (
        index,
        canonical_json(
            {
                "id": str(uuid.uuid4()),
                "type": ce_type,
                "time": (T0 + timedelta(minutes=index)).isoformat(),
                "subject": str(incident),
                "data": {"incident_id": str(incident), **data},
            }
        ),
    )


def first_report(index: int, incident: uuid.UUID, party: str) -> StoredLeaf:
    return leaf_of(
        index,
        incident,
        "incident.reported",
        facts=ABSCONDING,
        reporter={"party": party, "name": "李明"},
        reported_at=(T0 + timedelta(minutes=index)).isoformat(),
    )


def test_R20_a_link_touches_both_incidents_it_names() -> None:
    headers = [
        LeafHeader(0, "incident.reported", str(A)),
        LeafHeader(1, "incident.merged", str(A), also=(str(B),)),
        LeafHeader(2, "incident.unlinked", str(C), also=(str(B),)),
    ]
    assert incidents_touched(headers) == {A: 0, B: 1, C: 2}


def test_R20_an_incident_is_reviewed_with_the_histories_of_the_incidents_joined_to_it() -> None:
    link = leaf_of(
        90,
        A,
        "incident.merged",
        merged_incident_id=str(B),
        link_id=str(uuid.uuid4()),
        party="BLO",
        actor_name="周主任",
        reason="同一事件",
        merged_at=(T0 + timedelta(minutes=90)).isoformat(),
    )
    office_late = leaf_of(
        95,
        B,
        "incident.report_filed",
        report_id=str(uuid.uuid4()),
        kind="FOLLOW_UP",
        reporter={"party": "SFS:150626102", "name": "李明"},
        filed_at=(T0 + timedelta(minutes=95)).isoformat(),
        changes={},
        previous={},
    )
    stored = {
        str(A): [first_report(0, A, "PLATFORM"), link],
        str(B): [first_report(3, B, "SFS:150626102"), link, office_late],
        str(C): [first_report(4, C, "PLATFORM")],
    }
    # A 续报 on the merged incident B touches only B; A, which B was merged into, is reviewed
    # too, over both histories, each leaf once.
    touched, histories = with_their_events({B: 95}, events_of(stored))
    assert touched == {B: 95, A: 95}
    assert [event.index for event in histories[A]] == [0, 3, 90, 95]
    assert histories[A] == histories[B]
    rules = partial(compute, rules=FindingRules(zone=COUNTY))
    leaves = [LeafHeader(95, "incident.report_filed", str(B))]
    review = review_leaves(95, leaves, histories, rules, touched)
    # The 司法所's own first report came three minutes after the platform's: no R12 on A,
    # and none on B, judged on A.
    assert review.findings == {B: [], A: []}
    alone, _ = with_their_events({C: 4}, events_of(stored))
    assert alone == {C: 4}


def test_R20_joined_incidents_follow_standing_links_only() -> None:
    link_id = str(uuid.uuid4())
    linked = leaf_of(
        1, A, "incident.linked", linked_incident_id=str(B), link_id=link_id, linked_by="PEOPLE"
    )
    undone = leaf_of(2, A, "incident.unlinked", linked_incident_id=str(B), link_id=link_id)
    assert joined_incidents([linked]) == {str(A), str(B)}
    assert joined_incidents([linked, undone]) == set()
    assert joined_incidents([first_report(0, A, "PLATFORM")]) == set()


def test_a_leaf_without_an_event_s_fields_stops_only_its_incident_s_review() -> None:
    log = Log()
    log.reported(A)
    log.reported(B)
    log.stored[B] = [(1, b'{"id":"x","type":"incident.reported"}')]  # no time
    review = review_leaves(0, log.from_(0), log.histories, Recorder())
    assert review.cursor == 1 and review.stop is not None
    assert review.stop.incident_id == B and review.stop.reason.startswith("KeyError")
    assert list(review.findings) == [A]


def test_a_leaf_in_two_histories_is_read_once() -> None:
    link = leaf_of(1, A, "incident.linked", linked_incident_id=str(B), link_id="L")
    histories = events_of({str(A): [first_report(0, A, "PLATFORM"), link], str(B): [link]})
    assert histories[str(A)][1] is histories[str(B)][0]
