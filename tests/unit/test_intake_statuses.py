"""Each incident's latest status change of a batch, as applying them one by one leaves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.intake.handlers import latest_changes

START = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_latest_change_of_each_incident_stays_and_of_equal_times_the_last() -> None:
    first, second = uuid4(), uuid4()
    changes = [
        {"incident_id": first, "status": "RESPONDING", "changed_at": START},
        {"incident_id": second, "status": "RESPONDING", "changed_at": START},
        {"incident_id": first, "status": "CLOSED", "changed_at": START + timedelta(seconds=2)},
        {"incident_id": first, "status": "ESCALATED", "changed_at": START + timedelta(seconds=1)},
        {"incident_id": second, "status": "SEARCHING", "changed_at": START},
    ]
    assert latest_changes(changes) == [changes[2], changes[4]]
    assert latest_changes([]) == []
