"""Which alerts an obligation's outcome stops, and the reason they are stopped with
(services/notification/status.py). No database: the states and words come first."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from services.notification.status import (
    FINISHED,
    WALKING,
    NotificationStatus,
    carries_on,
    withdrawable,
    withdrawal_reason,
)
from shared.events.models import ObligationMet, ObligationWaived


def met(status: str) -> ObligationMet:
    return ObligationMet(
        incident_id=uuid4(),
        obligation_id=uuid4(),
        party="TCG:150626102",
        rule_id="R6",
        status=status,
        met_at=datetime.now(UTC),
        met_by_event_id=uuid4(),
    )


def waived(reason: str) -> ObligationWaived:
    return ObligationWaived(
        incident_id=uuid4(),
        obligation_id=uuid4(),
        party="BLO",
        rule_id="R11",
        reason=reason,
        waived_at=datetime.now(UTC),
    )


@pytest.mark.parametrize("status", ["NEW", "PENDING", "DELIVERED"])
def test_an_alert_still_walking_its_contacts_is_withdrawn(status: str) -> None:
    assert withdrawable(status)


@pytest.mark.parametrize("status", ["ACKNOWLEDGED", "UNACKNOWLEDGED", "FAILED", "WITHDRAWN"])
def test_an_acknowledged_or_finished_alert_keeps_what_happened(status: str) -> None:
    assert not withdrawable(status)


def test_every_status_is_either_walking_or_finished() -> None:
    assert WALKING | FINISHED == set(NotificationStatus)
    assert not WALKING & FINISHED
    assert NotificationStatus.WITHDRAWN in FINISHED


def test_a_waived_supervision_says_why_in_the_waiver_s_words() -> None:
    assert withdrawal_reason(waived("原事项已办结")) == "义务已免除：原事项已办结"


@pytest.mark.parametrize(
    ("status", "reason"), [("MET", "义务已按时办结"), ("MET_LATE", "义务已逾期办结")]
)
def test_a_met_duty_says_whether_it_was_met_in_time(status: str, reason: str) -> None:
    assert withdrawal_reason(met(status)) == reason


@pytest.mark.parametrize("status", list(NotificationStatus))
def test_R20_a_moved_duty_keeps_its_alert_unless_it_was_withdrawn(status: str) -> None:
    # Withdrawn, the duty's party was told it need not act: the moved duty alerts it again.
    # In any other state the alert carries on under the new id (never a second alert).
    assert carries_on(status) is (status != NotificationStatus.WITHDRAWN)
