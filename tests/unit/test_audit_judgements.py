"""What people decide about findings (services/audit/judgements.py): the pure rules."""

from __future__ import annotations

import uuid
from datetime import timedelta

from services.audit.judgements import investigation_report_filed, refusal_of_record, state_of
from shared.events.models import FindingReviewed
from tests.unit.test_audit_findings import INCIDENT, T0, Log


def review(decision: str, minutes: int) -> FindingReviewed:
    return FindingReviewed(
        review_id=uuid.uuid4(),
        finding_id=uuid.uuid4(),
        incident_id=INCIDENT,
        rule_id="R12",
        decision=decision,
        reason="理由",
        reviewer_party="CEO",
        reviewer="ceo-officer",
        reviewed_at=T0 + timedelta(minutes=minutes),
    )


def test_findings_are_suspicions_until_reviewed_and_the_latest_review_counts() -> None:
    assert state_of([], superseded=False) == "OPEN"
    assert state_of([review("CONFIRMED", 1)], superseded=False) == "CONFIRMED"
    assert state_of([review("CONFIRMED", 1), review("DISMISSED", 2)], False) == "DISMISSED"
    assert state_of([review("DISMISSED", 1)], superseded=True) == "SUPERSEDED"


def test_r15_waits_for_the_investigation_report_filed_or_the_incident_reviewed() -> None:
    log = Log()
    log.reported()
    log.closed(60)
    assert not investigation_report_filed(log.events)
    log.add("incident.action_recorded", 70, action="CLOSED", party="BLO")
    assert not investigation_report_filed(log.events)
    filed = Log()
    action_id = str(uuid.uuid4())
    filed.add(
        "incident.action_recorded",
        90,
        action_id=action_id,
        action="INVESTIGATION_REPORT_FILED",
        party="BJO",
    )
    assert investigation_report_filed(filed.events)
    filed.add("action.rejected", 91, action_id=action_id, action="INVESTIGATION_REPORT_FILED")
    assert not investigation_report_filed(filed.events)  # filed before closure: refused
    reviewed = Log()
    reviewed.add("incident.status_changed", 90, status="REVIEWED", changed_at=T0.isoformat())
    assert investigation_report_filed(reviewed.events)


def test_r15_a_discipline_rests_on_findings_of_the_incident_that_still_stand() -> None:
    standing, dismissed, superseded, other = (uuid.uuid4() for _ in range(4))
    states = {standing: "CONFIRMED", dismissed: "DISMISSED", superseded: "SUPERSEDED"}
    assert refusal_of_record("DISCIPLINE", [standing], states) is None
    assert refusal_of_record("COMMENDATION", [], states) is None
    assert "at least one finding" in (refusal_of_record("DISCIPLINE", [], states) or "")
    assert str(other) in (refusal_of_record("COMMENDATION", [other], states) or "")
    fallen = refusal_of_record("DISCIPLINE", [standing, dismissed, superseded], states) or ""
    assert str(dismissed) in fallen and str(superseded) in fallen
