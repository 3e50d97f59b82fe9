"""What people read on the running stack: refusals they can act on, alerts in plain Chinese."""

from __future__ import annotations

import json

import httpx

from tests.integration.helpers import (
    act,
    eventually,
    find,
    obligations_when,
    report,
    timeline_with,
    violence_report,
)
from tests.support import WebhookSink

TUKE = "150626102"


async def test_a_report_listing_a_subject_twice_is_refused_with_a_problem(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    subject = {"id": "SQJZ-2024-0107", "name": "王某某"}
    response = await clients["intake"].post(
        "/v1/incidents", json=violence_report(subjects=[subject, {**subject, "name": "王某"}])
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "SQJZ-2024-0107" in response.text


async def test_an_alert_about_fifty_subjects_names_three_and_counts_fifty(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    subjects = [{"id": f"SQJZ-2024-{n:04d}", "name": f"张{n:02d}某"} for n in range(50)]
    incident_id = await report(
        clients,
        category="MASS_INCIDENT",
        phase="OCCURRED",
        subjects=subjects,
        reporter={"party": "PLATFORM", "name": "县公安局指挥中心"},
    )
    alerts = await webhook_sink.wait_for(incident_id, {f"SFS:{TUKE}"})
    # Other parties' alerts may come first: read the 司法所's.
    text = next(alert["text"] for alert in alerts if alert["party"] == f"SFS:{TUKE}")
    assert "涉及对象：张***、张***、张***等50人" in text, text
    assert text.count("张***") == 3


CODES_PEOPLE_SHOULD_NOT_READ = (
    "IMMEDIATE",
    "PROMPT",
    "FOLLOW_UP",
    "ABSCONDED",
    "+00:00",
    "PLATFORM",
)


async def test_duties_alerts_and_the_report_speak_chinese_in_county_time(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id = await report(
        clients,
        category="ABSCONDED",
        phase="OCCURRED",
        reporter={"party": "PLATFORM", "name": "县公安局指挥中心"},
    )
    obligations = await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R3")
    )
    (search,) = find(obligations, rule_id="R3")
    assert search["deadline_text"] == "立即（15分钟）"
    assert "须在15分钟内（立即）组织查找" in search["why"] and "截止北京时间" in search["why"]
    for duty in obligations["obligations"]:
        assert not [code for code in CODES_PEOPLE_SHOULD_NOT_READ if code in duty["why"]], duty
        assert not any(space in duty["plan_text"] for space in " \n"), duty["plan_text"]

    async def r3_alerts() -> list[dict]:
        return [a for a in webhook_sink.for_incident(incident_id) if a["rule_id"] == "R3"]

    (r3_alert,) = await eventually(r3_alerts, bool)
    assert "时限：立即（15分钟），" in r3_alert["text"]

    markdown = await eventually(
        lambda: clients["audit"].get(f"/v1/incidents/{incident_id}/investigation-report"),
        lambda response: response.status_code == 200 and "立即（15分钟）" in response.text,
    )
    people_read = markdown.text.split("## 附录")[0]
    assert "| 发生地 | 图克镇中心街农贸市场东门 |" in people_read
    # The reporter's name is personal data: masked for a reader without pii:read.
    assert "| 首报 | 公安机关警情平台 县*******，" in people_read
    assert not [code for code in CODES_PEOPLE_SHOULD_NOT_READ if code in people_read]


async def test_a_duty_no_longer_needed_says_why_in_words(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients, category="OTHER", phase="OCCURRED")
    await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R9"))
    await act(clients, incident_id, "CLOSED", party=f"TCG:{TUKE}")
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R9", status="WAIVED")
    )
    assert find(body, rule_id="R9")[0]["closed_reason"] == (
        "图克镇社区矫正突发事件应急处置指挥小组已记录「处置结束」，不再需要"
    )


async def test_free_text_is_masked_for_readers_without_pii_read_and_on_the_topics(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """续报 text, action notes and reasons: the subjects' names (also a former subject's) and the
    numbers people type (ID, mobile, landline) are masked in events and for readers without
    pii:read; a reader with it sees them as written, and that read is published."""
    incident_id = await report(clients)
    text = "王某某（身份证150626 19900101 1234）已被控制，家属电话13904770105，座机0477-7512345"
    filed = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "FOLLOW_UP",
            "reporter": {"party": f"SFS:{TUKE}", "name": "李明"},
            "text": text,
        },
    )
    assert filed.status_code == 201, filed.text
    acted = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/actions",
        json={
            "action": "FIRST_RESPONSE_STARTED",
            "party": f"SFS:{TUKE}",
            "actor_name": "李明",
            "note": "已联系王某某本人，电话13904770105",
        },
    )
    assert acted.status_code == 201, acted.text
    masked = (await clients["intake"].get(f"/v1/incidents/{incident_id}")).json()
    shown = json.dumps(masked, ensure_ascii=False)
    for secret in ("王某某", "13904770105", "7512345", "19900101"):
        assert secret not in shown, secret
    assert "王**" in masked["reports"][-1]["text"] and "139****0105" in shown
    timeline = await timeline_with(
        clients["audit"], incident_id, "incident.report_filed", also={"incident.action_recorded": 1}
    )
    for secret in ("13904770105", "7512345", "19900101"):
        assert secret not in timeline.text, secret
    clear = await clients["intake"].get(
        f"/v1/incidents/{incident_id}", headers={"X-Act-As": "BLO incidents:read pii:read"}
    )
    assert clear.json()["reports"][-1]["text"] == text
