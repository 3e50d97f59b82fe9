"""Every rule of RULES.md that a report or an action triggers, on the real stack.

Deadlines here are the policy's defaults (minutes to days); the rules that need time to pass
(R4's search window, R9's recurrence, missed deadlines, the ladder) are in `tests/escalation/`.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from shared.settings import Settings
from tests.integration.helpers import (
    act,
    eventually,
    find,
    obligations_when,
    report,
    violence_report,
)
from tests.support import WebhookSink, fetch_value

TUKE = "150626102"


def duties(body: dict[str, Any], rule_id: str) -> set[tuple[str, str, str]]:
    return {(o["party"], o["action"], o["deadline_name"]) for o in find(body, rule_id=rule_id)}


def with_rule(rule_id: str):
    return lambda body: find(body, rule_id=rule_id)


async def test_R1_a_report_from_the_platform_alerts_the_sfs_to_respond(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id = await report(
        clients,
        category="OTHER",
        phase="OCCURRED",
        reporter={"party": "PLATFORM", "name": "县公安局指挥中心"},
    )
    obligations = await obligations_when(clients, incident_id, with_rule("R1"))
    assert duties(obligations, "R1") == {(f"SFS:{TUKE}", "START_FIRST_RESPONSE", "IMMEDIATE")}
    r1 = find(obligations, rule_id="R1")[0]
    assert r1["why"].startswith("依据 R1（预案四）")
    assert r1["plan_text"].startswith("突发事件发生后")
    await webhook_sink.wait_for(incident_id, {f"SFS:{TUKE}"}, lambda a: a["rule_id"] == "R1")


async def test_a_reported_incident_is_stored_with_the_rules_its_report_fired(
    clients: dict[str, httpx.AsyncClient], infra_settings: Settings
) -> None:
    """The report's decision comes before its row, which carries the rules fired (a rule
    that fires once looks there)."""
    incident_id = await report(
        clients,
        category="OTHER",
        phase="OCCURRED",
        reporter={"party": "PLATFORM", "name": "县公安局指挥中心"},
    )
    await obligations_when(clients, incident_id, with_rule("R1"))
    fired = await fetch_value(
        infra_settings,
        "SELECT fired_rules FROM escalation.incidents WHERE id = $1",
        uuid.UUID(incident_id),
    )
    assert "R1" in fired
    assert fired == sorted(set(fired))


async def test_R2_uncontrollable_first_response_reports_to_banner_and_activates_township_plan(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id = await report(clients)
    await act(clients, incident_id, "FIRST_RESPONSE_STARTED")
    await act(clients, incident_id, "UNCONTROLLABLE")
    obligations = await obligations_when(clients, incident_id, with_rule("R2"))
    assert duties(obligations, "R2") == {
        ("BLO", "REPORT", "IMMEDIATE"),
        (f"TCG:{TUKE}", "ACTIVATE_PLAN", "IMMEDIATE"),
    }
    assert "不能控制" in find(obligations, rule_id="R2")[0]["why"]
    escalated = await eventually(
        lambda: clients["intake"].get(f"/v1/incidents/{incident_id}"),
        lambda response: response.json()["status"] == "ESCALATED",
    )
    assert escalated.json()["status_reason"].startswith("「先期处置不能控制」")

    async def r2_alerts() -> list[dict[str, Any]]:
        return [a for a in webhook_sink.for_incident(incident_id) if a["rule_id"] == "R2"]

    alerts = await eventually(r2_alerts, lambda found: len(found) == 2)
    assert {(alert["party"], alert["action"]) for alert in alerts} == {
        ("BLO", "REPORT"),
        (f"TCG:{TUKE}", "ACTIVATE_PLAN"),
    }


async def test_R3_absconded_subject_must_be_searched_for_at_once(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients, category="ABSCONDED", phase="OCCURRED")
    obligations = await obligations_when(clients, incident_id, with_rule("R3"))
    assert duties(obligations, "R3") == {(f"SFS:{TUKE}", "ORGANISE_SEARCH", "IMMEDIATE")}
    await act(clients, incident_id, "SEARCH_STARTED")
    obligations = await obligations_when(
        clients,
        incident_id,
        lambda body: find(body, rule_id="R3", status="MET"),
    )
    status = (await clients["escalation"].get(f"/v1/incidents/{incident_id}/obligations")).json()
    assert status["status"] == "SEARCHING"


async def test_R4_search_failed_reports_up_and_gives_police_written_notice(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id = await report(clients, category="ABSCONDED", phase="OCCURRED")
    await act(clients, incident_id, "SEARCH_STARTED")
    await act(clients, incident_id, "SEARCH_FAILED")
    obligations = await obligations_when(clients, incident_id, with_rule("R4"))
    assert duties(obligations, "R4") == {
        (f"TCG:{TUKE}", "REPORT", "PROMPT"),
        ("BLO", "REPORT", "PROMPT"),
        (f"PPS:{TUKE}", "WRITTEN_NOTICE", "PROMPT"),
        (f"SFS:{TUKE}", "ASSIST_POLICE_SEARCH", "FOLLOW_UP"),
    }
    await webhook_sink.wait_for(
        incident_id, {f"PPS:{TUKE}"}, lambda alert: alert["action"] == "WRITTEN_NOTICE"
    )
    await act(clients, incident_id, "FOUND")
    found = await obligations_when(
        clients,
        incident_id,
        lambda body: find(body, action="ASSIST_POLICE_SEARCH", status="MET"),
    )
    assert {o["status"] for o in find(found, action="ASSIST_POLICE_SEARCH")} == {"MET"}


async def test_R5_signs_of_violence_call_for_reports_counselling_and_key_monitoring(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(
        clients, phase="SIGNS", subjects=[{"id": f"S-{uuid.uuid4().hex[:8]}", "name": "赵某某"}]
    )
    obligations = await obligations_when(clients, incident_id, with_rule("R5"))
    assert duties(obligations, "R5") == {
        (f"TCG:{TUKE}", "REPORT", "PROMPT"),
        ("BLO", "REPORT", "PROMPT"),
        (f"SFS:{TUKE}", "COUNSEL", "PROMPT"),
        (f"SFS:{TUKE}", "KEY_MONITORING", "PROMPT"),
    }
    assert not duties(obligations, "R6")


async def test_R6_violence_in_progress_calls_police_reports_and_goes_on_scene(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id = await report(clients)
    obligations = await obligations_when(clients, incident_id, with_rule("R6"))
    assert duties(obligations, "R6") == {
        (f"PPS:{TUKE}", "CALL_POLICE", "IMMEDIATE"),
        (f"TCG:{TUKE}", "REPORT", "IMMEDIATE"),
        ("BLO", "REPORT", "IMMEDIATE"),
        (f"SFS:{TUKE}", "GO_ON_SCENE", "IMMEDIATE"),
        (f"SFS:{TUKE}", "FULL_WRITTEN_REPORT", "WRITTEN"),
    }
    await webhook_sink.wait_for(incident_id, {f"PPS:{TUKE}", f"TCG:{TUKE}", "BLO"})


async def test_R6_abnormal_death_also_calls_the_police(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients, category="ABNORMAL_DEATH", phase="OCCURRED")
    obligations = await obligations_when(clients, incident_id, with_rule("R6"))
    assert (f"PPS:{TUKE}", "CALL_POLICE", "IMMEDIATE") in duties(obligations, "R6")


async def test_R6_a_one_line_follow_up_is_no_written_report_one_stating_the_facts_is(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients)
    await obligations_when(clients, incident_id, with_rule("R6"))

    async def follow_up(**body: object) -> None:
        reporter = {"party": f"SFS:{TUKE}", "name": "李明"}
        response = await clients["intake"].post(
            f"/v1/incidents/{incident_id}/reports",
            json={"kind": "FOLLOW_UP", "reporter": reporter, **body},
        )
        assert response.status_code == 201, response.text

    await follow_up(text="续报")
    obligations = await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R9", status="MET")
    )
    assert find(obligations, action="FULL_WRITTEN_REPORT")[0]["status"] == "PENDING"
    await follow_up(changes={"summary": "对象已被控制，摊贩轻伤送医。"}, text="书面报告")
    await obligations_when(
        clients, incident_id, lambda body: find(body, action="FULL_WRITTEN_REPORT", status="MET")
    )


async def test_R7_missing_elements_make_a_follow_up_due_and_completing_them_meets_it(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients, persons_involved=None, measures_taken=None)
    obligations = await obligations_when(clients, incident_id, with_rule("R7"))
    assert duties(obligations, "R7") == {(f"SFS:{TUKE}", "COMPLETE_REPORT", "WRITTEN")}
    r7 = find(obligations, rule_id="R7")[0]
    assert "涉及人员基本情况" in r7["why"] and "已采取的措施" in r7["why"]

    async def follow_up(changes: dict[str, str]) -> None:
        response = await clients["intake"].post(
            f"/v1/incidents/{incident_id}/reports",
            json={
                "kind": "FOLLOW_UP",
                "reporter": {"party": f"SFS:{TUKE}", "name": "李明"},
                "changes": changes,
            },
        )
        assert response.status_code == 201, response.text

    await follow_up({"persons_involved": "对象1人"})
    await follow_up({"measures_taken": "已控制现场"})
    obligations = await obligations_when(
        clients,
        incident_id,
        lambda body: find(body, rule_id="R7", status="MET"),
    )
    full_report = find(obligations, action="FULL_WRITTEN_REPORT")[0]
    assert full_report["status"] == "MET"


async def test_R8_disaster_runs_the_reporting_chain_and_banner_contacts_departments(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients, category="DISASTER", phase="OCCURRED")
    obligations = await obligations_when(clients, incident_id, with_rule("R8"))
    assert duties(obligations, "R8") == {
        (f"TCG:{TUKE}", "REPORT", "PROMPT"),
        (f"SFS:{TUKE}", "JOIN_RELIEF", "PROMPT"),
        ("BLO", "REPORT", "PROMPT"),
        ("BLO", "CONTACT_DEPARTMENTS", "PROMPT"),
    }


async def test_R9_follow_up_is_due_while_open_and_again_after_each_one(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients, category="OTHER", phase="OCCURRED")
    obligations = await obligations_when(clients, incident_id, with_rule("R9"))
    assert duties(obligations, "R9") == {(f"SFS:{TUKE}", "FOLLOW_UP_REPORT", "FOLLOW_UP")}
    response = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "FOLLOW_UP",
            "reporter": {"party": f"SFS:{TUKE}", "name": "李明"},
            "text": "续报：情况稳定。",
        },
    )
    assert response.status_code == 201
    obligations = await obligations_when(
        clients, incident_id, lambda body: len(find(body, rule_id="R9")) == 2
    )
    r9 = find(obligations, rule_id="R9")
    assert [o["status"] for o in r9] == ["MET", "PENDING"]
    assert r9[1]["trigger"] == "recurs:FOLLOW_UP_REPORT"


async def test_R14_closing_makes_the_investigation_report_due_and_filing_it_reviews(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id = await report(clients, category="OTHER", phase="OCCURRED")
    for action in ("FIRST_RESPONSE_STARTED", "CONTROLLED", "CLOSED"):
        await act(clients, incident_id, action)
    obligations = await obligations_when(clients, incident_id, with_rule("R14"))
    assert duties(obligations, "R14") == {("BJO", "INVESTIGATION_REPORT", "INVESTIGATION")}
    r9 = find(obligations, rule_id="R9")
    assert {o["status"] for o in r9} == {"WAIVED"}  # no follow-ups once closed
    await webhook_sink.wait_for(incident_id, {"BJO"})
    response = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/actions",
        json={"action": "INVESTIGATION_REPORT_FILED", "party": "BJO", "actor_name": "王主任"},
    )
    assert response.status_code == 201
    reviewed = await eventually(
        lambda: clients["escalation"].get(f"/v1/incidents/{incident_id}/obligations"),
        lambda response: response.json()["status"] == "REVIEWED",
    )
    r14 = find(reviewed.json(), rule_id="R14")[0]
    assert r14["status"] == "MET"


async def test_R16_a_drill_runs_the_same_rules_never_reaches_police_and_counts(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id = await report(
        clients,
        drill=True,
        township="苏力德苏木",
        reporter={"party": "SFS:150626200", "name": "巴特尔"},
    )
    obligations = await obligations_when(clients, incident_id, with_rule("R6"))
    assert {o["drill"] for o in obligations["obligations"]} == {True}
    assert ("PPS:150626200", "CALL_POLICE", "IMMEDIATE") in duties(obligations, "R6")
    # No drill contacts are configured here: every drill alert goes to the local file only.
    for party in ("PPS:150626200", "TCG:150626200", "BLO"):
        notifications = await eventually(
            lambda party=party: clients["notification"].get(
                "/v1/notifications", params={"incident_id": incident_id, "party": party}
            ),
            lambda response: (
                response.json()["items"]
                and response.json()["items"][0]["status"] in ("DELIVERED", "UNACKNOWLEDGED")
            ),
        )
        item = notifications.json()["items"][0]
        assert item["drill"] and "【演练】" in item["title"]
        assert {attempt["channel"] for attempt in item["attempts"]} == {"file"}
    assert not webhook_sink.for_incident(incident_id)  # never a real contact, police above all

    compliance = await clients["escalation"].get("/v1/drills/compliance")
    row = next(item for item in compliance.json()["items"] if item["party"] == "SFS:150626200")
    assert row["compliant"] and incident_id in row["incident_ids"]
    assert row["rule_id"] == "R16"


async def test_R17_signs_again_within_30_days_suggest_key_monitoring(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    subject = {"id": f"S-{uuid.uuid4().hex[:8]}", "name": "钱某某"}
    first = await report(clients, phase="SIGNS", category="MASS_INCIDENT", subjects=[subject])
    first_obligations = await obligations_when(clients, first, with_rule("R5"))
    assert not duties(first_obligations, "R17")
    # Closed, the first incident is history: signs reported again are a new incident (while
    # it is open, the same subject's report is a report of it, R20).
    await act(clients, first, "CLOSED", f"TCG:{TUKE}")
    second = await report(clients, phase="SIGNS", category="OTHER", subjects=[subject])
    obligations = await obligations_when(clients, second, with_rule("R17"))
    assert duties(obligations, "R17") == {(f"SFS:{TUKE}", "SUGGEST_KEY_MONITORING", "PROMPT")}
    why = find(obligations, rule_id="R17")[0]["why"]
    assert first in why and subject["id"] in why


async def test_R17_a_drills_signs_are_no_history_of_a_real_subject(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    subject = {"id": f"S-{uuid.uuid4().hex[:8]}", "name": "孙某某"}
    drill = await report(clients, phase="SIGNS", subjects=[subject], drill=True)
    await obligations_when(clients, drill, with_rule("R5"))
    real = await report(clients, phase="SIGNS", subjects=[subject])
    real_obligations = await obligations_when(clients, real, with_rule("R5"))
    assert not duties(real_obligations, "R17")
    # Real signs again: the real history alone makes R17 fire, citing only the real report.
    await act(clients, real, "CLOSED", f"TCG:{TUKE}")
    again = await report(clients, phase="SIGNS", subjects=[subject])
    obligations = await obligations_when(clients, again, with_rule("R17"))
    why = find(obligations, rule_id="R17")[0]["why"]
    assert real in why and drill not in why


async def test_dry_run_evaluates_a_report_and_stores_nothing(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    body = violence_report(category="ABSCONDED", phase="OCCURRED")
    response = await clients["escalation"].post("/v1/policy/evaluate", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["rules_fired"] == ["R1", "R3", "R9"]
    assert [timer["name"] for timer in result["timers"]] == ["SEARCH_WINDOW"]
    assert all(item["why"].startswith("依据 R") for item in result["obligations"])
    bad = await clients["escalation"].post("/v1/policy/evaluate", json={**body, "township": "x"})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    # A time deadlines cannot follow (year 9999 + 15 min) was a 500: now the field is named.
    for moment in ("9999-12-31T23:59:00+00:00", "0001-01-01T00:00:00+00:00"):
        far = await clients["escalation"].post(
            "/v1/policy/evaluate", json={**body, "reported_at": moment}
        )
        assert far.status_code == 422, far.text
        assert far.json()["errors"][0]["field"] == "reported_at"
