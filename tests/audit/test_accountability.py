"""A scripted incident: a duty done late (R10, not R11), a written notice the 司法所 never sends
while the police record their own takeover (it meets nothing of the 司法所's), a correction that
contradicts the category (R13) and brings the rules with it, a 续报 from signs to an attack that
reaches the police, a concealment gap (R12) dismissed with a reason: the findings and the
investigation report name each one, with inclusion proofs that verify against the checkpoint."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.audit.leaves import leaf_hash
from services.audit.merkle import verify_inclusion
from services.audit.note import Checkpoint, open_checkpoint
from tests.audit.conftest import AuditSystem
from tests.integration.helpers import eventually, find, obligations_when, report

TUKE = "150626102"
SFS, TCG, PPS = f"SFS:{TUKE}", f"TCG:{TUKE}", f"PPS:{TUKE}"


async def act(
    clients: dict[str, httpx.AsyncClient],
    incident_id: str,
    action: str,
    party: str = SFS,
    **fields: Any,
) -> None:
    body = {"action": action, "party": party, "actor_name": "李明", **fields}
    response = await clients["intake"].post(f"/v1/incidents/{incident_id}/actions", json=body)
    assert response.status_code == 201, response.text


async def findings_of(clients: dict[str, httpx.AsyncClient], incident_id: str, wanted: set[str]):
    response = await eventually(
        lambda: clients["audit"].get("/v1/findings", params={"incident_id": incident_id}),
        lambda response: (
            wanted <= {f["rule_id"] for f in response.json()["findings"]}
            and all(
                max(f["evidence_log_indexes"]) < (f["checkpoint_size"] or 0)
                for f in response.json()["findings"]
            )
        ),
        timeout=30,
    )
    return response.json()


def check_proofs(body: dict[str, Any], finding: dict[str, Any], system: AuditSystem) -> None:
    checkpoint, _ = open_checkpoint(body["checkpoint"]["note"], system.log_key)
    assert checkpoint.size == finding["checkpoint_size"]
    proven = {proof["index"] for proof in finding["proofs"]}
    assert proven == set(finding["evidence_log_indexes"])
    for proof in finding["proofs"]:
        verify_inclusion(
            proof["index"],
            checkpoint.size,
            base64.b64decode(proof["leaf_hash"]),
            [base64.b64decode(step) for step in proof["proof"]],
            checkpoint.root_hash,
        )


async def test_scripted_incident_findings_and_report_name_each_lapse_with_proofs(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    now = datetime.now(UTC)
    incident_id = await report(
        clients,
        category="ABSCONDED",
        phase="OCCURRED",
        summary="社区矫正对象王某某失去联系，手机关机。",
        occurred_at=(now - timedelta(hours=4)).isoformat(),
        discovered_at=(now - timedelta(hours=3)).isoformat(),  # reported 3 h after discovery
    )
    body = await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R3"))
    search = find(body, rule_id="R3")[0]
    # The search is recorded only once its deadline has passed: late, not omitted (R10, not
    # R11), however early the officer says it began; lateness runs from the system's receipt.
    await obligations_when(
        clients, incident_id, lambda body: find(body, id=search["id"], status="MISSED")
    )
    await act(
        clients, incident_id, "SEARCH_STARTED", occurred_at=(now - timedelta(minutes=1)).isoformat()
    )
    await obligations_when(
        clients, incident_id, lambda body: find(body, id=search["id"], status="MET_LATE")
    )
    # Not found: R4 asks the 司法所 for a written notice to the police station (owner SFS).
    await act(clients, incident_id, "SEARCH_FAILED")
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R4", action="WRITTEN_NOTICE")
    )
    notice = find(body, rule_id="R4", action="WRITTEN_NOTICE")[0]
    assert notice["owner"] == SFS
    # The police record taking over the search: their own action, kept on the incident, which
    # meets nothing of the 司法所's notice; unsent, it is missed.
    await act(clients, incident_id, "SEARCH_TAKEN_OVER", party=PPS)
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, id=notice["id"], status="MISSED")
    )
    assert find(body, id=notice["id"])[0]["met_by_event_id"] is None
    # The category reported is corrected: no absconding, signs of revenge (R13); the rules
    # follow the facts as they now stand.
    correction = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "CORRECTION",
            "reporter": {"party": SFS, "name": "李明"},
            "changes": {"category": "VIOLENCE", "phase": "SIGNS"},
            "text": "经核实，对象并未脱管，系扬言报复他人，更正事件种类。",
        },
    )
    assert correction.status_code == 201, correction.text
    await obligations_when(clients, incident_id, lambda body: find(body, rule_id="R5"))
    # A 续报: the subject is now attacking someone. The police are called (R6), due from it.
    follow_up = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "FOLLOW_UP",
            "reporter": {"party": SFS, "name": "李明"},
            "changes": {"phase": "IN_PROGRESS"},
            "text": "续报：对象正在持刀伤人。",
        },
    )
    assert follow_up.status_code == 201, follow_up.text
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, rule_id="R6", party=PPS)
    )
    police = find(body, rule_id="R6", party=PPS)[0]
    assert (police["action"], police["trigger"]) == ("CALL_POLICE", "changed")
    await eventually(
        lambda: clients["audit"].get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: any(
            e["ce_type"] == "notification.delivered"
            and e["event"]["data"]["obligation_id"] == police["id"]
            for e in response.json()["entries"]
        ),
    )
    await act(clients, incident_id, "CONTROLLED", party=TCG)
    await act(clients, incident_id, "CLOSED", party=TCG)

    body = await findings_of(clients, incident_id, {"R10", "R11", "R12", "R13"})
    findings = body["findings"]
    late = [f for f in findings if f["rule_id"] == "R10"]
    assert {(f["party"], f["obligation_rule_id"]) for f in late} >= {(SFS, "R3"), (SFS, "R1")}
    assert all(f["title"] == "疑似迟报，供核查" and "逾期" in f["detail"] for f in late)
    assert not [
        f for f in findings if f["rule_id"] == "R11" and f["obligation_id"] == search["id"]
    ], "done late is R10, never R11"
    (r3_late,) = [f for f in late if f["obligation_id"] == search["id"]]
    assert any("称实际于" in line for line in r3_late["asserted"])  # evidence, not the clock
    missed = next(
        f for f in findings if f["obligation_id"] == notice["id"] and f["rule_id"] == "R11"
    )
    # The 司法所 owed the notice: the omission is its, not the police station's.
    assert (missed["rule_id"], missed["kind"], missed["party"]) == ("R11", "OMITTED", SFS)
    assert missed["title"] == "疑似漏报，供核查"
    assert missed["deadline_name"] == "PROMPT"
    assert "书面通知" in missed["detail"]
    concealed = next(f for f in findings if f["rule_id"] == "R12")
    assert (concealed["party"], concealed["kind"]) == (SFS, "CONCEALED")
    assert "相隔 3小时" in concealed["detail"] and concealed["title"] == "疑似瞒报，供核查"
    (false,) = [f for f in findings if f["rule_id"] == "R13"]  # the 续报's new phase is news
    assert false["title"] == "疑似谎报，供核查"
    category, phase = false["versions"]
    assert (category["label"], phase["label"]) == ("种类", "事态阶段")
    assert (category["previous"], category["current"]) == (
        "脱离监督管理",
        "暴力犯罪或以要挟为目的的自杀、自焚、自残",
    )
    # A finding is a suspicion: the bureau office dismisses the concealment, with its reason.
    dismissed = await clients["audit"].post(
        f"/v1/findings/{concealed['finding_id']}/review",
        json={"decision": "DISMISSED", "reason": "发现时间系群众误记，不予认定。"},
        headers={"X-Act-As": "BJO"},
    )
    assert dismissed.status_code == 201, dismissed.text
    listed = await eventually(
        lambda: clients["audit"].get("/v1/findings", params={"incident_id": incident_id}),
        lambda response: any(
            f["rule_id"] == "R12" and f["state"] == "DISMISSED" for f in response.json()["findings"]
        ),
    )
    (shown,) = [f for f in listed.json()["findings"] if f["rule_id"] == "R12"]
    assert shown["review"]["reason"] == "发现时间系群众误记，不予认定。"
    # An incident's findings come a page at a time too, in the order they were found.
    of_incident = f"/v1/incidents/{incident_id}/findings"
    paged, after = [], None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        page = (await clients["audit"].get(of_incident, params=params)).json()
        assert len(page["findings"]) <= 2
        paged += [f["finding_id"] for f in page["findings"]]
        after = page["next"]
        if after is None:
            break
    whole = (await clients["audit"].get(of_incident, params={"limit": 500})).json()
    assert len(paged) >= 4 and paged == [f["finding_id"] for f in whole["findings"]][: len(paged)]
    for finding in findings:
        assert finding["evidence_log_indexes"]
        check_proofs(body, finding, audit_system)

    # Each piece of evidence is the event as it was published, its personal fields sealed:
    # those bytes hash to the leaf hash the proofs use, and opened they are the event shown.
    for index in missed["evidence_log_indexes"]:
        entry = (await clients["audit"].get(f"/v1/log/entries/{index}")).json()
        leaf = base64.b64decode(entry["leaf"])
        assert leaf_hash(leaf).hex() == entry["leaf_hash"]
        assert json.loads(leaf)["id"] == str(entry["ce_id"]) == entry["event"]["id"]

    # Published on audit.v1 once each, and logged back as leaves.
    timeline = await eventually(
        lambda: clients["audit"].get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: (
            sum(e["ce_type"] == "audit.finding" for e in response.json()["entries"])
            >= len(findings)
        ),
    )
    published = [e for e in timeline.json()["entries"] if e["ce_type"] == "audit.finding"]
    ids = [e["event"]["data"]["finding_id"] for e in published]
    assert len(ids) == len(set(ids))

    markdown = await clients["audit"].get(f"/v1/incidents/{incident_id}/investigation-report")
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    text = markdown.text
    for heading in ("一、事件概况", "二、处置经过", "三、责任调查", "四、经验总结", "五、整改意见"):
        assert heading in text
    for title in ("疑似迟报，供核查", "疑似漏报，供核查", "疑似瞒报，供核查", "疑似谎报，供核查"):
        assert title in text
    assert "原报「脱离监督管理」" in text
    assert "排除，理由：发现时间系群众误记，不予认定。" in text
    assert "图克镇司法所" in text and "（待填写）" in text
    checkpoint, _ = open_checkpoint(text.split("```\n")[1], audit_system.log_key)
    assert isinstance(checkpoint, Checkpoint)
    for index in missed["evidence_log_indexes"]:
        assert f"| {index} | `" in text

    html = await clients["audit"].get(
        f"/v1/incidents/{incident_id}/investigation-report", headers={"accept": "text/html"}
    )
    assert html.headers["content-type"].startswith("text/html")
    assert "<h2>三、责任调查</h2>" in html.text and "疑似漏报，供核查" in html.text


async def test_R13_a_follow_up_that_rewrites_stated_facts_is_suspected_like_a_correction(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    incident_id = await report(clients, category="DISRUPTION", phase="OCCURRED")
    # A follow-up may add what was unknown (the persons involved were stated; a new measure is
    # news), but here it also moves the place and turns a disruption into violence in progress.
    follow_up = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "FOLLOW_UP",
            "reporter": {"party": SFS, "name": "李明"},
            "changes": {
                "category": "VIOLENCE",
                "phase": "IN_PROGRESS",
                "location": "乌审召镇某村",
                "measures_taken": "已联系派出所",
            },
            "text": "续报：事态发展。",
        },
    )
    assert follow_up.status_code == 201, follow_up.text
    body = await findings_of(clients, incident_id, {"R13"})
    (false,) = [f for f in body["findings"] if f["rule_id"] == "R13"]
    assert (false["party"], false["kind"]) == (SFS, "FALSE")
    assert [v["label"] for v in false["versions"]] == ["种类", "事态阶段", "地点"]
    assert "在续报中改变了" in false["detail"]
    check_proofs(body, false, audit_system)


async def test_the_investigation_report_names_each_duty_met_and_who_acted(
    audit_system: AuditSystem, clients: dict[str, httpx.AsyncClient]
) -> None:
    incident_id = await report(clients)
    await obligations_when(clients, incident_id, lambda body: find(body, action="GO_ON_SCENE"))
    await act(clients, incident_id, "ON_SCENE", actor_name="周强")
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, action="GO_ON_SCENE", status="MET")
    )
    on_scene = find(body, action="GO_ON_SCENE")[0]
    markdown = await eventually(
        lambda: clients["audit"].get(f"/v1/incidents/{incident_id}/investigation-report"),
        lambda response: "按时办结" in response.text,
    )
    text = markdown.text
    assert f"按时办结：{on_scene['action_text']}（R6）" in text
    # People by name for a reader holding pii:read; masked for everyone else.
    assert any("| 周* | 记录处置：已到现场" in line for line in text.splitlines())
    assert "| 李* | 首报：" in text and "李明" not in text
    clear = await clients["audit"].get(
        f"/v1/incidents/{incident_id}/investigation-report",
        headers={"X-Act-As": "BLO audit:read pii:read"},
    )
    assert any("| 周强 | 记录处置：已到现场" in line for line in clear.text.splitlines())
    assert "| 李明 | 首报：" in clear.text  # the reporter, by name
    assert "**摘要**：共产生义务" in text.split("## 一、事件概况")[0]
