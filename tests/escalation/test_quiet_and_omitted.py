"""R9's quiet spells, R11's week past due and R10 after a miss, with time that passes: the
fast system's policy counts R11's week as 4 s and R9's quiet week as 12 s."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from tests.integration.helpers import act, find, obligations_when, report, timeline_with

TUKE = "150626102"
FOLLOW_UP_SECONDS = 3.0


def events_of(response: Any, event_type: str) -> list[dict[str, Any]]:
    return [e["event"]["data"] for e in response.json()["entries"] if e["ce_type"] == event_type]


async def test_R9_a_quiet_incident_tells_the_blo_once_and_stops_daily_escalations(fast) -> None:
    incident_id = await report(fast, category="OTHER", phase="OCCURRED")
    timeline = await timeline_with(fast["audit"], incident_id, "incident.went_quiet")
    quiet = events_of(timeline, "incident.went_quiet")
    assert len(quiet) == 1
    assert quiet[0]["party"] == "BLO" and quiet[0]["rule_id"] == "R9"
    body = await obligations_when(
        fast, incident_id, lambda body: not find(body, rule_id="R9", status="PENDING")
    )
    follow_ups = find(body, rule_id="R9", action="FOLLOW_UP_REPORT")
    assert follow_ups[-1]["status"] == "MISSED"
    assert "长期无新情况" in follow_ups[-1]["closed_reason"]
    # Nothing more comes due while nothing new happens: watch a follow-up period or two.
    await asyncio.sleep(2 * FOLLOW_UP_SECONDS)
    later = (await fast["escalation"].get(f"/v1/incidents/{incident_id}/obligations")).json()
    assert len(find(later, rule_id="R9", action="FOLLOW_UP_REPORT")) == len(follow_ups)
    assert not find(later, rule_id="R9", status="PENDING")
    timeline = await timeline_with(fast["audit"], incident_id, "incident.went_quiet")
    assert len(events_of(timeline, "incident.went_quiet")) == 1

    # News ends the quiet spell: the 续报 is the first of the daily follow-ups asked again.
    response = await fast["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "FOLLOW_UP",
            "reporter": {"party": f"SFS:{TUKE}", "name": "李明"},
            "text": "续报：对象情况稳定。",
        },
    )
    assert response.status_code == 201, response.text
    body = await obligations_when(
        fast,
        incident_id,
        lambda body: len(find(body, rule_id="R9", action="FOLLOW_UP_REPORT")) > len(follow_ups) + 1,
    )
    before = {o["id"] for o in follow_ups}
    resumed = [
        o for o in find(body, rule_id="R9", action="FOLLOW_UP_REPORT") if o["id"] not in before
    ]
    # Both come from one transaction, so their order on the page is not theirs to keep.
    asked_again = [o for o in resumed if o["trigger"] == "reported"]
    assert [o["status"] in ("MET", "MET_LATE") for o in asked_again] == [True]
    assert [o for o in resumed if o["trigger"] == "recurs:FOLLOW_UP_REPORT"]


async def test_R11_a_missed_duty_still_undone_past_the_week_is_omitted_and_R10_when_done(
    fast,
) -> None:
    incident_id = await report(fast, category="OTHER", phase="OCCURRED")
    body = await obligations_when(
        fast,
        incident_id,
        lambda body: [o for o in find(body, rule_id="R1") if o["omitted_at"] is not None],
    )
    r1 = find(body, rule_id="R1")[0]
    assert r1["status"] == "MISSED"
    timeline = await timeline_with(fast["audit"], incident_id, "obligation.omitted")
    omitted = events_of(timeline, "obligation.omitted")
    assert [(o["obligation_id"], o["rule_id"]) for o in omitted] == [(r1["id"], "R1")]
    # Done after all: met late (R10), measured from when the system received it.
    recorded = await act(fast, incident_id, "FIRST_RESPONSE_STARTED")
    body = await obligations_when(
        fast, incident_id, lambda body: find(body, id=r1["id"], status="MET_LATE")
    )
    met_at = datetime.fromisoformat(find(body, id=r1["id"])[0]["met_at"])
    assert met_at == datetime.fromisoformat(recorded["recorded_at"])
    timeline = await timeline_with(fast["audit"], incident_id, "obligation.met")
    met = [m for m in events_of(timeline, "obligation.met") if m["obligation_id"] == r1["id"]]
    assert met[0]["recorded_by"] == f"SFS:{TUKE}"


async def test_R9_follow_ups_are_no_omission_each_day_they_lapse(fast) -> None:
    """A missed 续报 is superseded by the next one; it never becomes an R11 omission."""
    incident_id = await report(fast, category="OTHER", phase="OCCURRED")
    body = await obligations_when(
        fast,
        incident_id,
        lambda body: [o for o in find(body, rule_id="R1") if o["omitted_at"] is not None],
    )
    assert not [o for o in find(body, rule_id="R9") if o["omitted_at"] is not None], (
        "a recurring follow-up is never omitted"
    )
