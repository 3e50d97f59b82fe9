"""What ordinary use of the running system must not break: odd text, facts recorded late,
moves a closed incident refuses, impossible times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.integration.helpers import (
    act,
    eventually,
    find,
    obligations_when,
    report,
    violence_report,
)

TUKE = "150626102"

# Text real reporters send: line breaks and tabs, emoji, separators, the longest summary allowed,
# a C1 control character and DEL, a backslash escape typed out.
ACCEPTED_TEXT = {
    "line breaks and tabs": {"summary": "第一行\r\n第二行\n\t缩进"},
    "emoji": {"summary": "现场😡有人受伤🚑", "location": "图克镇🏠"},
    "unicode separators": {"summary": "甲\u2028乙\u2029丙\u00a0丁"},
    "longest summary": {"summary": "冲" * 5000},
    "C1 control and DEL": {"measures_taken": "已劝阻\x85已报警\x7f"},
    "escape typed out": {"summary": "报文中有\\u0000字样"},
    "odd subject id": {"subjects": [{"id": "SQJZ/2024#0107 α", "name": "王某某"}]},
}


async def test_a_control_character_is_refused_at_the_door_with_the_field_named(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """A NUL used to be accepted (201) and then dead-lettered by escalation: no duties, no
    alerts, no police call, and the reporter never told."""
    response = await clients["intake"].post(
        "/v1/incidents", json=violence_report(summary="a\u0000b")
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error["field"] == "summary" and "U+0000" in error["message"]


@pytest.mark.parametrize("text", list(ACCEPTED_TEXT.values()), ids=list(ACCEPTED_TEXT))
async def test_every_accepted_report_yields_its_duties(
    clients: dict[str, httpx.AsyncClient], text: dict
) -> None:
    """R1 and R6 for each report intake answered 201: nothing accepted is refused downstream."""
    response = await clients["intake"].post("/v1/incidents", json=violence_report(**text))
    assert response.status_code == 201, response.text
    incident_id = response.json()["id"]
    body = await obligations_when(
        clients,
        incident_id,
        lambda body: find(body, rule_id="R1") and find(body, rule_id="R6"),
    )
    assert find(body, rule_id="R6", party=f"PPS:{TUKE}", action="CALL_POLICE")


async def test_on_scene_recorded_after_controlled_meets_the_duty_and_keeps_the_status(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """Officers record after the fact: CONTROLLED first, then that they had been on the scene.
    The late fact meets R6's GO_ON_SCENE; only the move back to RESPONDING is refused."""
    incident_id = await report(clients)
    await obligations_when(clients, incident_id, lambda body: find(body, action="GO_ON_SCENE"))
    on_scene_at = datetime.now(UTC) - timedelta(minutes=1)
    await act(clients, incident_id, "CONTROLLED")
    await obligations_when(clients, incident_id, lambda body: body["status"] == "CONTROLLED")
    response = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/actions",
        json={
            "action": "ON_SCENE",
            "party": f"SFS:{TUKE}",
            "actor_name": "李明",
            "occurred_at": on_scene_at.isoformat(),
        },
    )
    assert response.status_code == 201, response.text
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, action="GO_ON_SCENE", status="MET")
    )
    assert body["status"] == "CONTROLLED"
    # Lateness runs from the system's receipt; the time the officer asserts is evidence.
    duty = find(body, action="GO_ON_SCENE")[0]
    met_at = datetime.fromisoformat(duty["met_at"])
    assert met_at == datetime.fromisoformat(response.json()["recorded_at"])

    def met_on_scene(response: httpx.Response) -> list[dict]:
        return [
            e["event"]["data"]
            for e in response.json()["entries"]
            if e["ce_type"] == "obligation.met"
            and e["event"]["data"]["obligation_id"] == duty["id"]
        ]

    timeline = await eventually(
        lambda: clients["audit"].get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: response.status_code == 200 and met_on_scene(response),
    )
    (met,) = met_on_scene(timeline)
    assert datetime.fromisoformat(met["asserted_at"]) == on_scene_at
    assert met["recorded_by"] == f"SFS:{TUKE}"


async def test_what_a_closed_incident_refuses_is_refused_at_once_naming_the_status(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """A second CLOSED, an action after CLOSED, a 续报 on a closed incident: 409 to the caller,
    not 201 and a refusal later, out of sight. R14's investigation report is still taken."""
    incident_id = await report(clients, category="OTHER", phase="OCCURRED")
    for action in ("FIRST_RESPONSE_STARTED", "CONTROLLED"):
        await act(clients, incident_id, action)  # one after the other, as fast as they come
    await act(clients, incident_id, "CLOSED", party=f"TCG:{TUKE}")  # only TCG or BLO closes
    for action, party in (
        ("CLOSED", f"TCG:{TUKE}"),
        ("ON_SCENE", f"SFS:{TUKE}"),
        ("POLICE_CALLED", f"SFS:{TUKE}"),
    ):
        response = await clients["intake"].post(
            f"/v1/incidents/{incident_id}/actions",
            json={"action": action, "party": party, "actor_name": "李明"},
        )
        assert response.status_code == 409, (action, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["incident_status"] == "CLOSED"
        assert "CLOSED" in response.json()["detail"]
    follow_up = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "FOLLOW_UP",
            "reporter": {"party": f"SFS:{TUKE}", "name": "李明"},
            "text": "续报：对象情绪稳定。",
        },
    )
    assert follow_up.status_code == 409, follow_up.text
    assert follow_up.json()["incident_status"] == "CLOSED"
    shown = (await clients["intake"].get(f"/v1/incidents/{incident_id}")).json()
    assert [a["action"] for a in shown["actions"]] == [
        "FIRST_RESPONSE_STARTED",
        "CONTROLLED",
        "CLOSED",
    ]
    assert [r["kind"] for r in shown["reports"]] == ["INITIAL"]
    filed = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/actions",
        json={"action": "INVESTIGATION_REPORT_FILED", "party": "BJO", "actor_name": "王主任"},
    )
    assert filed.status_code == 201, filed.text
    await obligations_when(clients, incident_id, lambda body: body["status"] == "REVIEWED")


@pytest.mark.parametrize(
    "before_incident",
    [timedelta(days=3), timedelta(days=365 * 26)],
    ids=["three days before", "the year 2000"],
)
async def test_an_action_dated_before_the_incident_is_refused(
    clients: dict[str, httpx.AsyncClient], before_incident: timedelta
) -> None:
    """An action cannot meet duties that did not exist yet: its time may precede the earliest
    known time of the incident (occurred, discovered, reported) only by clock skew."""
    occurred_at = datetime.now(UTC) - timedelta(minutes=30)
    incident_id = await report(clients, occurred_at=occurred_at.isoformat())

    async def on_scene(at: datetime) -> httpx.Response:
        return await clients["intake"].post(
            f"/v1/incidents/{incident_id}/actions",
            json={
                "action": "ON_SCENE",
                "party": f"SFS:{TUKE}",
                "actor_name": "李明",
                "occurred_at": at.isoformat(),
            },
        )

    refused = await on_scene(occurred_at - before_incident)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    (error,) = refused.json()["errors"]
    assert error["field"] == "occurred_at" and "before the incident" in error["message"]
    # Within the clock skew of the earliest known time, it is a fact like any other.
    accepted = await on_scene(occurred_at - timedelta(minutes=2))
    assert accepted.status_code == 201, accepted.text
    shown = (await clients["intake"].get(f"/v1/incidents/{incident_id}")).json()
    assert len(shown["actions"]) == 1


async def test_R9_the_next_follow_up_is_due_a_day_after_the_last_one(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """A 续报 soon after the report: the next is due 24 h after it, not 24 h after the first
    due time (which made follow-ups every 48 h)."""
    incident_id = await report(clients, category="OTHER", phase="OCCURRED")
    await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R9"))
    response = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "FOLLOW_UP",
            "reporter": {"party": f"SFS:{TUKE}", "name": "李明"},
            "text": "续报：对象已被控制，情绪稳定。",
        },
    )
    assert response.status_code == 201, response.text
    body = await obligations_when(
        clients, incident_id, lambda body: len(find(body, rule_id="R9")) == 2
    )
    done, following = find(body, rule_id="R9")
    assert (done["status"], following["status"]) == ("MET", "PENDING")
    last_follow_up = datetime.fromisoformat(done["met_at"])
    assert datetime.fromisoformat(following["due_at"]) == last_follow_up + timedelta(hours=24)


async def test_closing_ends_every_duty_still_open_but_the_investigation_report(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """After CLOSED nothing stays pending on the obligations page: what the policy waives on
    closure (R9) is waived, what is still undone is missed with the closure as the reason (R11),
    and R14's investigation report is due."""
    incident_id = await report(clients)
    await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R6"))
    await act(clients, incident_id, "CONTROLLED")
    await act(clients, incident_id, "CLOSED", party=f"TCG:{TUKE}")
    body = await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R14"))
    assert [o["status"] for o in find(body, rule_id="R14")] == ["PENDING"]
    still_pending = [
        (o["rule_id"], o["action"])
        for o in body["obligations"]
        if o["status"] == "PENDING" and o["rule_id"] != "R14"
    ]
    assert still_pending == []
    police = find(body, rule_id="R6", action="CALL_POLICE")[0]
    assert (police["status"], police["closed_reason"]) == ("MISSED", "事件已结束，仍未办理")
    assert [o["status"] for o in find(body, rule_id="R9")] == ["WAIVED"]
    assert [o["status"] for o in find(body, rule_id="R1")] == ["MET"]  # CONTROLLED met it
