"""What people read on the running stack: refusals they can act on, alerts in plain Chinese."""

from __future__ import annotations

import httpx

from tests.integration.helpers import report, violence_report
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
    text = alerts[0]["text"]
    assert "涉及对象：张***、张***、张***等50人" in text, text
    assert text.count("张***") == 3
