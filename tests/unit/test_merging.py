"""R20, a merge of two incidents: which open duties of the merged incident move to the
surviving one and which are waived as doubled, and what undoing the merge gives back
(services/escalation/merging.py). Pure: no database."""

from __future__ import annotations

from uuid import UUID, uuid4

from services.escalation.merging import (
    MoveMade,
    merge_plan,
    moved_id,
    restorations,
    restored_id,
)
from services.escalation.rules import StandingDuty

LINK = UUID("5b1f7e1a-0000-4000-8000-000000000020")
SFS = "SFS:150626102"
TCG = "TCG:150626102"


def duty(
    rule_id: str,
    party: str,
    action: str,
    status: str = "PENDING",
    escalated_from: UUID | None = None,
) -> StandingDuty:
    return StandingDuty(uuid4(), rule_id, party, action, status, False, escalated_from)


def test_a_duty_the_surviving_incident_has_is_doubled_and_a_unique_one_moves() -> None:
    first_response = duty("R1", SFS, "START_FIRST_RESPONSE")
    police = duty("R6", "PPS:150626102", "CALL_POLICE", status="MISSED")
    surviving_first_response = duty("R1", SFS, "START_FIRST_RESPONSE", status="MET")
    moves = merge_plan(LINK, [first_response, police], [surviving_first_response])
    doubled, moved = moves
    assert (doubled.obligation_id, doubled.outcome, doubled.counterpart) == (
        first_response.id,
        "DOUBLED",
        surviving_first_response.id,
    )
    assert (moved.obligation_id, moved.outcome, moved.status) == (police.id, "MOVED", "MISSED")
    assert moved.counterpart == moved_id(LINK, police.id)
    # The same merge gives the same ids, another merge others.
    assert moved.counterpart == merge_plan(LINK, [police], [])[0].counterpart
    assert moved.counterpart != merge_plan(uuid4(), [police], [])[0].counterpart


def test_a_waived_duty_of_the_surviving_incident_does_not_stand_and_closed_duties_stay() -> None:
    report = duty("R2", TCG, "REPORT")
    waived_there = duty("R2", TCG, "REPORT", status="WAIVED")
    met_here = duty("R1", SFS, "START_FIRST_RESPONSE", status="MET")
    waived_here = duty("R5", "BLO", "REPORT", status="WAIVED")
    (move,) = merge_plan(LINK, [report, met_here, waived_here], [waived_there])
    assert (move.obligation_id, move.outcome) == (report.id, "MOVED")


def test_a_supervision_follows_what_it_supervises() -> None:
    moved = duty("R6", TCG, "REPORT", status="MISSED")
    supervision = duty("R10", "BLO", "SUPERVISE", escalated_from=moved.id)
    doubled = duty("R1", SFS, "START_FIRST_RESPONSE", status="MISSED")
    its_supervision = duty("R10", TCG, "SUPERVISE", escalated_from=doubled.id)
    standing = duty("R1", SFS, "START_FIRST_RESPONSE")
    elsewhere = uuid4()
    stray = duty("R10", "BJO", "SUPERVISE", escalated_from=elsewhere)
    moves = {
        move.obligation_id: move
        for move in merge_plan(
            LINK, [moved, supervision, doubled, its_supervision, stray], [standing]
        )
    }
    assert moves[supervision.id].escalated_from == moved_id(LINK, moved.id)
    assert moves[its_supervision.id].escalated_from == standing.id
    assert moves[stray.id].escalated_from == elsewhere
    assert moves[moved.id].escalated_from is None
    assert {move.outcome for move in moves.values()} == {"MOVED", "DOUBLED"}
    assert moves[doubled.id].outcome == "DOUBLED"


def test_a_supervision_is_doubled_only_by_a_supervision_of_the_same_duty() -> None:
    doubled = duty("R1", SFS, "START_FIRST_RESPONSE", status="MISSED")
    its_supervision = duty("R10", TCG, "SUPERVISE", escalated_from=doubled.id)
    unique = duty("R5", TCG, "REPORT", status="MISSED")
    unique_supervision = duty("R10", TCG, "SUPERVISE", escalated_from=unique.id)
    standing = duty("R1", SFS, "START_FIRST_RESPONSE", status="MISSED")
    standing_supervision = duty("R10", TCG, "SUPERVISE", escalated_from=standing.id)
    moves = {
        move.obligation_id: move
        for move in merge_plan(
            LINK,
            [doubled, its_supervision, unique, unique_supervision],
            [standing, standing_supervision],
        )
    }
    assert moves[its_supervision.id].outcome == "DOUBLED"
    assert moves[its_supervision.id].counterpart == standing_supervision.id
    # The same rung supervising another duty is no double of it: it moves with its duty.
    assert moves[unique_supervision.id].outcome == "MOVED"
    assert moves[unique_supervision.id].escalated_from == moved_id(LINK, unique.id)


def test_undoing_moves_back_what_is_still_open_and_recreates_the_doubled() -> None:
    still_pending, met_meanwhile, doubled = uuid4(), uuid4(), uuid4()
    made = [
        MoveMade(still_pending, "MOVED", moved_id(LINK, still_pending), "PENDING", "MISSED"),
        MoveMade(met_meanwhile, "MOVED", moved_id(LINK, met_meanwhile), "PENDING", "MET"),
        MoveMade(doubled, "DOUBLED", uuid4(), "MISSED", "PENDING"),
    ]
    back, again = restorations(LINK, made)
    # Moved back from where it went, as it now stands there (missed meanwhile: missed).
    assert back.copy_of == moved_id(LINK, still_pending)
    assert (back.status, back.withdraw) == ("MISSED", True)
    assert back.new_id == restored_id(LINK, back.copy_of) != still_pending
    # The doubled duty is given back as it stood when merged; it is waived already.
    assert (again.copy_of, again.status, again.withdraw) == (doubled, "MISSED", False)
    # A duty met on the surviving incident stays met there: nothing comes back for it.
    assert met_meanwhile not in {r.copy_of for r in (back, again)}


def test_undoing_points_supervisions_at_the_duties_given_back() -> None:
    supervised, supervision = uuid4(), uuid4()
    made = [
        MoveMade(supervised, "DOUBLED", uuid4(), "MISSED", "PENDING"),
        MoveMade(
            supervision,
            "MOVED",
            moved_id(LINK, supervision),
            "PENDING",
            "PENDING",
            escalated_from=supervised,
        ),
    ]
    again, back = restorations(LINK, made)
    assert back.escalated_from == again.new_id == restored_id(LINK, supervised)
