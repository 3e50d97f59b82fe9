"""Findings judged by people on the running stack: the BJO and the CEO confirm or dismiss a
finding with a reason, and R15's commendations and disciplines are recorded against the filed
investigation report. Each decision is published, lands in the log, and shows in the findings
and the investigation report."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from services.audit.personal import ERASED
from shared.problems import PROBLEM_MEDIA_TYPE
from tests.audit.conftest import AuditSystem
from tests.audit.helpers import erase_closed_until_now
from tests.audit.test_accountability import findings_of
from tests.integration.helpers import eventually, report

TUKE = "150626102"
SFS = f"SFS:{TUKE}"
AS_BJO = {"X-Act-As": "BJO"}
AS_CEO = {"X-Act-As": "CEO"}
CLEAR_READER = {"X-Act-As": "BLO audit:read pii:read"}


async def concealed_incident(clients: dict[str, httpx.AsyncClient]) -> tuple[str, dict[str, Any]]:
    """An incident reported three hours after its discovery, and its R12 finding."""
    now = datetime.now(UTC)
    incident_id = await report(
        clients,
        category="OTHER",
        occurred_at=(now - timedelta(hours=4)).isoformat(),
        discovered_at=(now - timedelta(hours=3)).isoformat(),
    )
    body = await findings_of(clients, incident_id, {"R12"})
    return incident_id, next(f for f in body["findings"] if f["rule_id"] == "R12")


async def timeline_types(clients: dict[str, httpx.AsyncClient], incident_id: str) -> list[str]:
    response = await clients["audit"].get(f"/v1/incidents/{incident_id}/timeline")
    return [entry["ce_type"] for entry in response.json()["entries"]]


async def test_findings_are_reviewed_by_bjo_or_ceo_with_a_reason_and_dismissed_stay_listed(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    audit = clients["audit"]
    incident_id, finding = await concealed_incident(clients)
    assert (finding["state"], finding["review"], finding["reviews"]) == ("OPEN", None, [])
    review = f"/v1/findings/{finding['finding_id']}/review"
    confirm = {"decision": "CONFIRMED", "reason": "经核实，司法所延误报告三小时。"}

    # Only the bureau office and the city office judge findings.
    for party in ("BLO", SFS, "PRO"):
        refused = await audit.post(review, json=confirm, headers={"X-Act-As": party})
        assert refused.status_code == 403, (party, refused.text)
        assert refused.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    blank = await audit.post(review, json={"decision": "DISMISSED", "reason": "  "}, headers=AS_BJO)
    assert blank.status_code == 422, blank.text
    unknown = await audit.post(f"/v1/findings/{uuid.uuid4()}/review", json=confirm, headers=AS_BJO)
    assert unknown.status_code == 404 and unknown.json()["title"] == "Finding not found"
    assert unknown.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)

    confirmed = await audit.post(review, json=confirm, headers=AS_BJO)
    assert confirmed.status_code == 201, confirmed.text
    assert (confirmed.json()["reviewer_party"], confirmed.json()["rule_id"]) == ("BJO", "R12")
    dismiss = {"decision": "DISMISSED", "reason": "市局复核：发现时间系群众误报，不予认定。"}
    dismissed = await audit.post(review, json=dismiss, headers=AS_CEO)
    assert dismissed.status_code == 201, dismissed.text

    # The latest review counts, every review is kept, and the finding stays listed.
    for listed in (
        await audit.get("/v1/findings", params={"incident_id": incident_id}),
        await audit.get(f"/v1/incidents/{incident_id}/findings"),
    ):
        (shown,) = [f for f in listed.json()["findings"] if f["rule_id"] == "R12"]
        assert shown["state"] == "DISMISSED"
        assert (shown["review"]["reason"], shown["review"]["reviewer_party"]) == (
            dismiss["reason"],
            "CEO",
        )
        assert [r["decision"] for r in shown["reviews"]] == ["CONFIRMED", "DISMISSED"]

    # Both reviews are published and logged with the incident.
    await eventually(
        lambda: timeline_types(clients, incident_id),
        lambda types: types.count("finding.reviewed") == 2,
    )
    text = (await audit.get(f"/v1/incidents/{incident_id}/investigation-report")).text
    assert f"核查意见：确认，理由：{confirm['reason']}" in text
    assert f"核查意见（现行）：排除，理由：{dismiss['reason']}" in text


async def test_r15_commendations_and_disciplines_rest_on_findings_of_a_filed_report(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    audit = clients["audit"]
    incident_id, finding = await concealed_incident(clients)
    record = f"/v1/incidents/{incident_id}/accountability"
    discipline = {
        "kind": "DISCIPLINE",
        "person": "张某",
        "role": "图克镇司法所所长",
        "party": SFS,
        "decision": "通报批评",
        "document_number": "乌司发〔2026〕12号",
        "finding_ids": [finding["finding_id"]],
    }
    refused = await audit.post(record, json=discipline, headers={"X-Act-As": "CEO"})
    assert refused.status_code == 403, refused.text
    early = await audit.post(record, json=discipline, headers=AS_BJO)
    assert early.status_code == 409, early.text
    assert early.json()["type"].endswith("/report-not-filed")

    # Closed by the banner office, the investigation report filed by the bureau office (R14).
    for party, action in (("BLO", "CLOSED"), ("BJO", "INVESTIGATION_REPORT_FILED")):
        response = await clients["intake"].post(
            f"/v1/incidents/{incident_id}/actions",
            json={"action": action, "party": party, "actor_name": "王主任"},
        )
        assert response.status_code == 201, response.text
    await eventually(
        lambda: audit.get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: any(
            e["ce_type"] == "incident.status_changed" and e["event"]["data"]["status"] == "REVIEWED"
            for e in response.json()["entries"]
        ),
    )

    foreign = {**discipline, "finding_ids": [str(uuid.uuid4())]}
    assert (await audit.post(record, json=foreign, headers=AS_BJO)).status_code == 422
    bare = {**discipline, "finding_ids": []}
    bare_refused = await audit.post(record, json=bare, headers=AS_BJO)
    assert bare_refused.status_code == 422 and "at least one finding" in bare_refused.text
    recorded = await audit.post(record, json=discipline, headers=AS_BJO)
    assert recorded.status_code == 201, recorded.text
    assert (recorded.json()["rule_id"], recorded.json()["recorded_by"]) == ("R15", "BJO")
    commendation = {
        **discipline,
        "kind": "COMMENDATION",
        "person": "李明",
        "role": "社区矫正工作者",
        "decision": "通报表扬",
        "document_number": "乌司发〔2026〕13号",
        "finding_ids": [],
    }
    assert (await audit.post(record, json=commendation, headers=AS_BJO)).status_code == 201

    listed = (await audit.get(record, headers=CLEAR_READER)).json()["records"]
    assert [(r["kind"], r["person"]) for r in listed] == [
        ("DISCIPLINE", "张某"),
        ("COMMENDATION", "李明"),
    ]
    first_page = (await audit.get(record, params={"limit": 1})).json()
    second_page = (await audit.get(record, params={"limit": 1, "after": first_page["next"]})).json()
    assert [r["kind"] for r in first_page["records"] + second_page["records"]] == [
        "DISCIPLINE",
        "COMMENDATION",
    ]
    assert second_page["next"] is None
    masked = (await audit.get(record)).json()["records"]
    assert [(r["person"], r["decision"]) for r in masked] == [
        ("张*", "通报批评"),
        ("李*", "通报表扬"),
    ]
    assert listed[0]["finding_ids"] == [finding["finding_id"]]
    await eventually(
        lambda: timeline_types(clients, incident_id),
        lambda types: types.count("accountability.recorded") == 2,
    )
    text = (await audit.get(f"/v1/incidents/{incident_id}/investigation-report")).text
    assert "## 六、表彰与处分（R15）" in text
    assert f"处分：张*（图克镇司法所所长，图克镇司法所（{SFS}））" in text
    clear = await audit.get(
        f"/v1/incidents/{incident_id}/investigation-report", headers=CLEAR_READER
    )
    assert f"处分：张某（图克镇司法所所长，图克镇司法所（{SFS}））" in clear.text
    assert "- 文号：乌司发〔2026〕12号" in text and "- 决定：通报表扬" in text
    # The record names its finding by its number in section 三, which lists the findings by
    # their evidence: the R11 findings of the duties left undone at the close, found once the
    # log has the close, come before it when found by now.
    heading = re.search(r"^### (\d+)\. 疑似瞒报，供核查（R12）", text, re.MULTILINE)
    assert heading is not None, text
    assert f"- 依据：第 {heading.group(1)} 条 疑似瞒报，供核查（R12）" in text

    # Kept with the person's name sealed under the incident's data key, and erased with it
    # after the retention period; what was decided, by whom and when, stays.
    database = await asyncpg.connect(audit_system.infra.database_url)
    try:
        kept = await database.fetch(
            "SELECT data FROM audit.accountability_records WHERE incident_id = $1", incident_id
        )
    finally:
        await database.close()
    assert [set(json.loads(row["data"])["person"]) for row in kept] == [{"sealed"}] * 2
    assert incident_id in await erase_closed_until_now(audit_system.infra.database_url)
    erased = (await audit.get(record, headers=CLEAR_READER)).json()["records"]
    assert [(r["kind"], r["person"], r["decision"]) for r in erased] == [
        ("DISCIPLINE", ERASED, "通报批评"),
        ("COMMENDATION", ERASED, "通报表扬"),
    ]
    listed_findings = (
        await audit.get(f"/v1/incidents/{incident_id}/findings", headers=CLEAR_READER)
    ).json()["findings"]
    judged = next(f for f in listed_findings if f["finding_id"] == finding["finding_id"])
    assert judged["detail"] == ERASED and judged["rule_id"] == "R12"


async def test_r11_published_before_the_duty_was_done_is_shown_superseded_by_its_r10(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    """Findings once published stay: the R11 an omission gave and the R10 the late action gave
    later are both stored (as the follower stores them, one pass after the other); the R11 is
    listed as superseded by the R10, also when a filter leaves the R10 out."""
    incident_id, obligation_id = uuid.uuid4(), uuid.uuid4()
    common = {
        "incident_id": str(incident_id),
        "party": SFS,
        "obligation_id": str(obligation_id),
        "obligation_rule_id": "R3",
        "action": "ORGANISE_SEARCH",
        "evidence_log_indexes": [0],
    }
    omitted = {**common, "finding_id": str(uuid.uuid4()), "rule_id": "R11", "kind": "OMITTED"}
    late = {**common, "finding_id": str(uuid.uuid4()), "rule_id": "R10", "kind": "LATE"}
    connection = await asyncpg.connect(audit_system.infra.database_url)
    try:
        for finding in (omitted, late):
            await connection.execute(
                "INSERT INTO audit.findings (finding_id, incident_id, rule_id, party, kind, "
                "evidence, data) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                uuid.UUID(finding["finding_id"]),
                incident_id,
                finding["rule_id"],
                SFS,
                finding["kind"],
                [0],
                json.dumps({**finding, "detail": "…"}),
            )
    finally:
        await connection.close()
    audit = clients["audit"]
    for listed in (
        await audit.get(f"/v1/incidents/{incident_id}/findings"),
        await audit.get("/v1/findings", params={"incident_id": str(incident_id), "rule": "R11"}),
    ):
        shown = {f["rule_id"]: f for f in listed.json()["findings"]}
        assert shown["R11"]["state"] == "SUPERSEDED"
        assert shown["R11"]["superseded_by"] == late["finding_id"]
    both = (await audit.get(f"/v1/incidents/{incident_id}/findings")).json()["findings"]
    assert {f["rule_id"]: f["state"] for f in both} == {"R11": "SUPERSEDED", "R10": "OPEN"}


async def test_the_list_of_findings_is_paged_and_a_page_position_is_checked(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    """Every finding once, in order, page by page; a position we did not give is a 422."""
    audit = clients["audit"]
    for _ in range(2):
        await concealed_incident(clients)
    whole = (await audit.get("/v1/findings", params={"limit": 500})).json()
    assert len(whole["findings"]) >= 2 and whole["next"] is None
    paged: list[str] = []
    cursor: str | None = None
    while True:
        page = await audit.get(
            "/v1/findings", params={"limit": 1, **({"after": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        paged += [finding["finding_id"] for finding in page.json()["findings"]]
        cursor = page.json()["next"]
        if cursor is None:
            break
    # Findings found meanwhile may only add to the end.
    assert paged[: len(whole["findings"])] == [f["finding_id"] for f in whole["findings"]]
    bad = await audit.get("/v1/findings", params={"after": "not-a-position"})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM_MEDIA_TYPE
    too_many = await audit.get("/v1/findings", params={"limit": 501})
    assert too_many.status_code == 422
