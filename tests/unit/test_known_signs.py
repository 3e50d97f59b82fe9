"""R17's history as one transaction of escalation knows it (`store.KnownSigns`): the signs of a
batch's subjects read once, with those its own reports stored since, so that each report of the
batch sees what it would have read alone, the batch's earlier reports of the same subject too.
The statement itself, and R17 on the running services:
tests/integration/test_rules_on_the_stack.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.escalation.rules import PriorSigns
from services.escalation.store import KnownSigns

T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def test_a_transaction_reads_a_subjects_signs_once_and_sees_those_it_stores_after() -> None:
    known = KnownSigns()
    earlier, other = uuid4(), uuid4()
    assert known.unread(["A", "B", "A"]) == ["A", "B"]
    known.read(
        ["A", "B"],
        [PriorSigns(earlier, "A", T0), PriorSigns(other, "B", T0 + timedelta(days=1), True)],
    )
    assert known.unread(["A", "B"]) == []
    assert known.unread(["B", "C"]) == ["C"]

    # A report of the batch stores its signs; the next report of the same subject sees them.
    first_of_batch = uuid4()
    known.stored([PriorSigns(first_of_batch, "A", T0 + timedelta(days=2))])
    assert known.of(["A"]) == (
        PriorSigns(earlier, "A", T0),
        PriorSigns(first_of_batch, "A", T0 + timedelta(days=2)),
    )
    assert known.of(["B"]) == (PriorSigns(other, "B", T0 + timedelta(days=1), True),)
    assert known.of(["C"]) == ()


def test_a_sign_is_known_once_however_often_it_is_read_or_stored() -> None:
    known = KnownSigns()
    incident = uuid4()
    sign = PriorSigns(incident, "A", T0)
    known.stored([sign])
    known.read(["A"], [sign])  # read back after its own transaction stored it
    known.stored([sign])
    assert known.of(["A", "B"]) == (sign,)


def test_signs_come_in_the_order_they_were_reported_whatever_order_they_were_read_in() -> None:
    known = KnownSigns()
    late, early, between = (PriorSigns(uuid4(), "A", T0 + timedelta(hours=h)) for h in (5, 1, 3))
    known.read(["A"], [late, early])
    known.stored([between])
    assert known.of(["A"]) == (early, between, late)
