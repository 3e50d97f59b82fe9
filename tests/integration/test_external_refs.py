"""R20, the source's own reference: a report sent again under the same 警情编号 by the same source
is the same incident, a replay when nothing changed and a follow-up (续报) when something did."""

from __future__ import annotations

import uuid

import httpx

from tests.integration.helpers import find, obligations_when, violence_report

PLATFORM = {"party": "PLATFORM", "name": "县公安局指挥中心"}


def platform_report(reference: str, **overrides) -> dict:
    return violence_report(reporter=PLATFORM, external_ref=reference, **overrides)


async def test_R20_the_same_reference_from_the_same_source_is_one_incident(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    intake = clients["intake"]
    reference = f"JQ-{uuid.uuid4().hex[:12]}"
    signs = platform_report(reference, phase="SIGNS")
    first = await intake.post("/v1/incidents", json=signs)
    assert first.status_code == 201, first.text
    incident_id = first.json()["id"]

    again = await intake.post("/v1/incidents", json=signs)
    assert again.status_code == 201 and again.json()["id"] == incident_id
    assert again.headers["Idempotent-Replayed"] == "true"

    # The platform sends the same 警情 again, now under way: one incident, with a 续报.
    under_way = {**signs, "phase": "IN_PROGRESS"}
    now = await intake.post("/v1/incidents", json=under_way)
    assert now.status_code == 200, now.text
    assert now.json()["id"] == incident_id
    assert now.headers["Report-Filed-As"] == "FOLLOW_UP"
    incident = (await intake.get(f"/v1/incidents/{incident_id}")).json()
    assert incident["facts"]["phase"] == "IN_PROGRESS"
    follow_ups = [r for r in incident["reports"] if r["kind"] == "FOLLOW_UP"]
    assert [(r["changes"], r["reporter"]["party"]) for r in follow_ups] == [
        ({"phase": "IN_PROGRESS"}, "PLATFORM")
    ]
    # The rules follow: the police are called on the same incident.
    await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R6", action="CALL_POLICE")
    )
    # Sent once more unchanged, it is a replay of that last report, not another 续报.
    replay = await intake.post("/v1/incidents", json=under_way)
    assert replay.headers["Idempotent-Replayed"] == "true"
    incident = (await intake.get(f"/v1/incidents/{incident_id}")).json()
    assert len([r for r in incident["reports"] if r["kind"] == "FOLLOW_UP"]) == 1


async def test_R20_a_reference_is_the_sources_own(clients: dict[str, httpx.AsyncClient]) -> None:
    """Another township under the same reference is a conflict, not a silent move."""
    intake = clients["intake"]
    reference = f"JQ-{uuid.uuid4().hex[:12]}"
    first = await intake.post("/v1/incidents", json=platform_report(reference))
    assert first.status_code == 201, first.text
    elsewhere = await intake.post(
        "/v1/incidents", json=platform_report(reference, township="乌审召镇")
    )
    assert elsewhere.status_code == 409, elsewhere.text
    assert elsewhere.json()["incident_id"] == first.json()["id"]
    assert elsewhere.headers["content-type"].startswith("application/problem+json")
