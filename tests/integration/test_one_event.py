"""R20 on the running stack: one event, several reports. The county platform and the 司法所
report the same event; it stays one incident with two reports, the police are called once, and
the 司法所 that reported within the deadline carries no concealment suspicion (R12). A near
match is only a candidate; people merge it, and an unlink restores both incidents."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from shared.paging import PAGE
from tests.integration.helpers import (
    count_of,
    eventually,
    find,
    obligations_when,
    subject_id,
    timeline_with,
    violence_report,
)
from tests.support import WebhookSink

TUKE = "150626102"
SFS, TCG, PPS = f"SFS:{TUKE}", f"TCG:{TUKE}", f"PPS:{TUKE}"
PLATFORM = {"party": "PLATFORM", "name": "县公安局指挥中心"}
OFFICER = {"party": SFS, "name": "李明", "phone": "13900000000"}


def subject(identifier: str) -> list[dict[str, str]]:
    return [{"id": identifier, "name": "王某某", "id_number": "150626199001011234"}]


async def incident_of(clients: dict[str, httpx.AsyncClient], incident_id: str) -> dict[str, Any]:
    response = await clients["intake"].get(f"/v1/incidents/{incident_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def first_report(clients: dict[str, httpx.AsyncClient], body: dict[str, Any]) -> str:
    response = await clients["intake"].post("/v1/incidents", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["filed_as"] == "INCIDENT"
    return response.json()["id"]


async def link(
    clients: dict[str, httpx.AsyncClient],
    incident_id: str,
    action: str,
    other: str | None = None,
    party: str = "BLO",
    expect: int | None = None,
    report_id: str | None = None,
) -> httpx.Response:
    """People's decision on `other` (an incident) or `report_id` (a report linked on arrival)."""
    response = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/links",
        json={
            "action": action,
            **({"incident_id": other} if other else {"report_id": report_id}),
            "party": party,
            "actor_name": "赵刚",
            "reason": "经核实为同一事件" if action != "UNLINK" else "经核实并非同一事件",
        },
    )
    if expect is not None:
        assert response.status_code == expect, response.text
    return response


async def test_R20_the_platform_and_the_sfs_report_one_event(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    """The issue's case: the platform reports violence under way with its 警情编号, the 司法所
    reports the same subject minutes later: one incident, two reports, one 报警, no R12."""
    person = subject_id()
    platform = violence_report(
        reporter=PLATFORM, external_ref=f"JQ-{uuid.uuid4().hex[:12]}", subjects=subject(person)
    )
    incident_id = await first_report(clients, platform)
    await webhook_sink.wait_for(incident_id, {PPS}, lambda alert: alert.get("rule_id") == "R6")

    officer = violence_report(reporter=OFFICER, subjects=subject(person))
    second = await clients["intake"].post("/v1/incidents", json=officer)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == incident_id
    assert (second.json()["filed_as"], second.json()["linked_by"]) == ("LINKED", "SUBJECT_ID")
    assert second.headers["Report-Filed-As"] == "LINKED"
    assert second.headers["Location"] == f"/v1/incidents/{incident_id}"

    incident = await incident_of(clients, incident_id)
    assert [(r["kind"], r["reporter"]["party"]) for r in incident["reports"]] == [
        ("INITIAL", "PLATFORM"),
        ("LINKED", SFS),
    ]
    linked = incident["reports"][1]
    assert linked["linked_by"] == "SUBJECT_ID"
    assert linked["stated"]["location"] == officer["location"]
    assert "王**" in linked["stated"]["summary"]  # personal data masked here too

    # Escalation and audit have taken the linked report in; the police were alerted once.
    timeline = await timeline_with(
        clients["audit"], incident_id, "incident.linked", also={"incident.updated": 1}
    )
    assert count_of("incident.reported", timeline) == 1
    body = await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R6"))
    assert len(find(body, rule_id="R6", party=PPS, action="CALL_POLICE")) == 1
    await webhook_sink.wait_for(
        incident_id, {PPS}, lambda alert: alert.get("about") == "incident.updated"
    )
    calls = [
        alert
        for alert in webhook_sink.for_incident(incident_id)
        if alert["party"] == PPS and alert.get("rule_id") == "R6"
    ]
    assert len(calls) == 1, calls

    # R12 is judged on the event: the 司法所 reported within the deadline of the platform.
    findings = await clients["audit"].get(f"/v1/incidents/{incident_id}/findings")
    assert findings.status_code == 200, findings.text
    assert not [
        f for f in findings.json()["findings"] if f["rule_id"] == "R12" and f["party"] == SFS
    ], findings.json()


async def test_R20_the_more_severe_report_moves_the_incident(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """Where linked reports differ, the event takes the more severe phase, and the rules follow
    (R6 calls the police); the first report's words stay."""
    person = subject_id()
    incident_id = await first_report(
        clients, violence_report(reporter=PLATFORM, phase="SIGNS", subjects=subject(person))
    )
    await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R5"))
    under_way = violence_report(
        reporter=OFFICER, subjects=subject(person), summary="对象正在持刀伤人"
    )
    response = await clients["intake"].post("/v1/incidents", json=under_way)
    assert response.status_code == 200 and response.json()["id"] == incident_id

    incident = await incident_of(clients, incident_id)
    assert incident["facts"]["phase"] == "IN_PROGRESS"
    assert incident["facts"]["summary"] != "对象正在持刀伤人"
    assert incident["reports"][1]["changes"] == {"phase": "IN_PROGRESS"}
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R6", party=PPS)
    )
    assert "R20" in find(body, rule_id="R6", party=PPS)[0]["why"]


async def test_R20_another_source_quoting_the_reference_is_the_same_event(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """The 司法所 quotes the platform's 警情编号 and names nobody the platform named."""
    reference = f"JQ-{uuid.uuid4().hex[:12]}"
    incident_id = await first_report(
        clients, violence_report(reporter=PLATFORM, external_ref=reference)
    )
    officer = violence_report(reporter=OFFICER, external_ref=reference)
    response = await clients["intake"].post("/v1/incidents", json=officer)
    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["linked_by"]) == (incident_id, "EXTERNAL_REF")
    incident = await incident_of(clients, incident_id)
    assert len(incident["facts"]["subjects"]) == 2  # both subjects are the event's now
    assert incident["reports"][1]["external_ref"] == reference
    # The 司法所's reference is now its own too: the same report again is a replay.
    again = await clients["intake"].post("/v1/incidents", json=officer)
    assert again.json()["id"] == incident_id
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len((await incident_of(clients, incident_id))["reports"]) == 2


async def test_R20_what_does_not_match(clients: dict[str, httpx.AsyncClient]) -> None:
    """The same subject in another township, or a drill against a real incident: new ones."""
    person = subject_id()
    incident_id = await first_report(clients, violence_report(subjects=subject(person)))
    elsewhere = await first_report(
        clients,
        violence_report(
            subjects=subject(person),
            township="乌审召镇",
            reporter={"party": "SFS:150626101", "name": "张强"},
        ),
    )
    drill = await first_report(clients, violence_report(subjects=subject(person), drill=True))
    assert len({incident_id, elsewhere, drill}) == 3


async def test_R20_a_near_match_is_a_candidate_merged_and_unlinked_by_people(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    intake = clients["intake"]
    first = await first_report(clients, violence_report(reporter=PLATFORM))
    response = await intake.post("/v1/incidents", json=violence_report())
    assert response.status_code == 201, response.text  # another subject: no link, but told
    second = response.json()["id"]
    assert first in response.json()["candidates"]
    candidates = await intake.get(f"/v1/incidents/{second}/candidates")
    assert candidates.status_code == 200, candidates.text
    near = [c for c in candidates.json()["items"] if c["id"] == first]
    assert near and near[0]["reporter_party"] == "PLATFORM"
    assert "同一乡镇、同一类别" in near[0]["why"]

    # Only the command group or the banner office decides; the 司法所 may not.
    refused = await link(clients, first, "MERGE", second, party=SFS)
    assert refused.status_code in (403, 422), refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")

    await obligations_when(clients, second, lambda body: find(body, rule_id="R1"))
    merged = await link(clients, first, "MERGE", second, expect=201)
    assert merged.json()["kind"] == "MERGE"
    # The merged incident takes no more work: it goes on in the survivor.
    closed_door = await intake.post(
        f"/v1/incidents/{second}/reports",
        json={"kind": "FOLLOW_UP", "reporter": OFFICER, "text": "续报"},
    )
    assert closed_door.status_code == 409, closed_door.text
    assert closed_door.json()["merged_into"] == first
    assert (await incident_of(clients, second))["merged_into"] == first
    # Merged incidents are no candidates of each other.
    assert not [
        c
        for c in (await intake.get(f"/v1/incidents/{first}/candidates")).json()["items"]
        if c["id"] == second
    ]
    # The merged incident's open duties moved to the survivor or, doubled, were waived.
    body = await obligations_when(
        clients,
        second,
        lambda body: (
            body["obligations"] and all(o["status"] != "PENDING" for o in body["obligations"])
        ),
    )
    assert all(o["status"] == "WAIVED" for o in find(body, rule_id="R1"))
    twice = await link(clients, first, "MERGE", second)
    assert twice.status_code == 409 and twice.json()["type"].endswith("already-linked")

    unlinked = await link(clients, first, "UNLINK", second, expect=200)
    assert unlinked.json()["unlinked_at"] is not None
    assert (await incident_of(clients, second))["merged_into"] is None
    # Both histories are kept and the duties are back where they were.
    await obligations_when(clients, second, lambda body: find(body, rule_id="R1", status="PENDING"))
    timeline = await timeline_with(
        clients["audit"], second, "incident.unlinked", also={"incident.merged": 1}
    )
    assert count_of("incident.reported", timeline) == 1
    reports = await intake.post(
        f"/v1/incidents/{second}/reports",
        json={"kind": "FOLLOW_UP", "reporter": OFFICER, "text": "续报"},
    )
    assert reports.status_code == 201, reports.text
    assert await link(clients, first, "UNLINK", second, expect=409)


async def test_R20_a_new_incident_names_a_page_of_candidates_at_most_nearest_first(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """However busy the township, a 201 names the first page of its candidates, nearest first;
    the rest are on the next pages of GET /v1/incidents/{id}/candidates."""
    intake = clients["intake"]
    township, reporter = "150626200", {"party": "SFS:150626200", "name": "张强"}

    def report() -> dict[str, Any]:
        return violence_report(category="OTHER", township=township, reporter=reporter, drill=True)

    earlier: list[str] = []
    for _ in range(PAGE // 20 + 1):
        responses = await asyncio.gather(
            *(intake.post("/v1/incidents", json=report()) for _ in range(21))
        )
        assert all(response.status_code == 201 for response in responses)
        earlier.extend(response.json()["id"] for response in responses)
    latest = await first_report(clients, report())
    created = await intake.post("/v1/incidents", json=report())
    assert created.status_code == 201, created.text
    named = created.json()["candidates"]
    assert len(named) == PAGE and named[0] == latest
    listed = await intake.get(f"/v1/incidents/{created.json()['id']}/candidates")
    assert [item["id"] for item in listed.json()["items"]] == named
    assert listed.json()["next"] is not None


async def test_R20_a_link_keeps_both_incidents(clients: dict[str, httpx.AsyncClient]) -> None:
    first = await first_report(clients, violence_report(reporter=PLATFORM))
    second = await first_report(clients, violence_report())
    linked = await link(clients, second, "LINK", first, party=TCG, expect=201)
    assert linked.json()["kind"] == "LINK"
    incident = await incident_of(clients, second)
    assert incident["merged_into"] is None
    assert [(lk["kind"], lk["linked_incident_id"]) for lk in incident["links"]] == [("LINK", first)]
    assert (await incident_of(clients, first))["links"][0]["id"] == linked.json()["id"]
    await eventually(
        lambda: clients["audit"].get(f"/v1/incidents/{first}/timeline"),
        lambda response: count_of("incident.linked", response) == 1,
    )
    # Another township's command group has no say over these incidents.
    other = await link(clients, second, "UNLINK", first, party="TCG:150626101")
    assert other.status_code == 403, other.text
    await link(clients, second, "UNLINK", first, party=TCG, expect=200)


async def test_R20_two_reports_of_one_event_arriving_together_open_one_incident(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    person = subject_id()
    responses = await asyncio.gather(
        clients["intake"].post(
            "/v1/incidents", json=violence_report(reporter=PLATFORM, subjects=subject(person))
        ),
        clients["intake"].post(
            "/v1/incidents", json=violence_report(reporter=OFFICER, subjects=subject(person))
        ),
    )
    assert sorted(response.status_code for response in responses) == [200, 201]
    assert len({response.json()["id"] for response in responses}) == 1


async def test_R20_a_report_linked_by_mistake_becomes_an_incident_of_its_own(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    """A mistyped subject id linked a report of another emergency: the BLO takes it out. It is
    an incident of its own, reported when it was, and the first incident's facts go back."""
    person = subject_id()
    first = await first_report(
        clients, violence_report(reporter=PLATFORM, phase="SIGNS", subjects=subject(person))
    )
    other = violence_report(
        reporter=OFFICER, subjects=subject(person), location="图克镇另一村", phase="OCCURRED"
    )
    linked = await clients["intake"].post("/v1/incidents", json=other)
    assert linked.status_code == 200 and linked.json()["id"] == first
    report = (await incident_of(clients, first))["reports"][1]
    assert (await incident_of(clients, first))["facts"]["phase"] == "OCCURRED"

    refused = await link(clients, first, "MERGE", report_id=report["id"])
    assert refused.status_code == 422, refused.text
    split = await link(clients, first, "UNLINK", report_id=report["id"], expect=200)
    own = split.json()["linked_incident_id"]
    assert split.json()["unlinked_by"] == "BLO"

    before = await incident_of(clients, first)
    assert before["facts"]["phase"] == "SIGNS"
    assert before["reports"][1]["split_into"] == own
    new = await incident_of(clients, own)
    assert new["reporter"]["party"] == SFS
    assert new["reported_at"] == report["filed_at"]
    assert (new["facts"]["location"], new["facts"]["phase"]) == ("图克镇另一村", "OCCURRED")
    # The new incident has the rules' duties of its own; the first one's R6 is waived again.
    await obligations_when(clients, own, lambda body: find(body, rule_id="R6", party=PPS))
    await obligations_when(
        clients, first, lambda body: find(body, rule_id="R6", party=PPS, status="WAIVED")
    )
    await link(clients, first, "UNLINK", report_id=report["id"], expect=409)
