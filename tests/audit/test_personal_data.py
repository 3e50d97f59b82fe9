"""The investigation report with personal data: the banner office's reader holding pii:read
gets the subjects in clear (name, 编号, full ID number) as the report to the city office needs,
opened from the sealed copy intake put on its events, and the read is logged as
audit.personal_data_read (on audit's own topic); everyone else, and every topic, sees them
masked only."""

from __future__ import annotations

import base64
import json

import httpx

from tests.audit.helpers import exported
from tests.integration.helpers import act, count_of, eventually, report, timeline_with

SFS = "SFS:150626102"
FIRST = ("王某某", "150626199001011234")
ADDED = ("张三丰", "15062619850202345X")
CLEAR_READER = {"X-Act-As": "BJO audit:read pii:read"}
MASKED_READER = {"X-Act-As": "BJO audit:read"}
PEOPLE = ("李明", "周强")
# The reporter's phone: intake keeps it sealed and publishes it masked, so the log never holds it.
PHONE = "13900000000"


def report_path(incident_id: str) -> str:
    return f"/v1/incidents/{incident_id}/investigation-report"


def reads_by_audit(timeline: httpx.Response) -> list[dict]:
    return [
        entry
        for entry in timeline.json()["entries"]
        if entry["ce_type"] == "audit.personal_data_read" and entry["ce_source"] == "audit"
    ]


async def test_a_reader_with_pii_read_gets_the_subjects_in_clear_and_the_read_is_logged(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    audit = clients["audit"]
    incident_id = await report(clients)
    # A correction adds a subject: the report must follow the subjects as last stated.
    correction = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "CORRECTION",
            "reporter": {"party": SFS, "name": "李明"},
            "changes": {
                "subjects": [
                    {"id": "SQJZ-2024-0107", "name": FIRST[0], "id_number": FIRST[1]},
                    {"id": "SQJZ-2024-0211", "name": ADDED[0], "id_number": ADDED[1]},
                ]
            },
        },
    )
    assert correction.status_code == 201, correction.text
    await timeline_with(audit, incident_id, "incident.report_filed")

    masked = await audit.get(report_path(incident_id), headers=MASKED_READER)
    assert masked.status_code == 200, masked.text
    assert "| 涉及对象 | 王**（编号 SQJZ-2024-0107，身份证号 150626********1234）；张**" in (
        masked.text
    )
    assert "| 个人信息 | 已遮蔽" in masked.text
    for reader, fmt in ((MASKED_READER, "markdown"), ({"X-Act-As": "CEO"}, "html")):
        answer = await audit.get(report_path(incident_id), params={"format": fmt}, headers=reader)
        text = answer.text
        assert [clear for clear in (*FIRST, *ADDED) if clear in text] == []

    shown = await audit.get(report_path(incident_id), headers=CLEAR_READER)
    assert shown.status_code == 200, shown.text
    assert (
        "| 涉及对象 | 王某某（编号 SQJZ-2024-0107，身份证号 150626199001011234）；"
        "张三丰（编号 SQJZ-2024-0211，身份证号 15062619850202345X） |"
    ) in shown.text
    assert "| 个人信息 | 明文" in shown.text

    # The clear read is on the incident's log, from audit, naming who read what; the masked
    # reads before it (same key, so earlier on the partition) left no trace.
    timeline = await eventually(
        lambda: audit.get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: len(reads_by_audit(response)) >= 1,
    )
    (read,) = reads_by_audit(timeline)
    assert read["event"]["data"]["party"] == "BJO"
    assert read["event"]["data"]["fields"] == [
        "subjects.name",
        "subjects.id_number",
        "people.name",
        "people.phone",
        "free text",
    ]
    assert count_of("audit.personal_data_read", timeline) == 1

    # Every event of the incident, on every topic, carries the subjects masked or sealed only.
    assert [clear for clear in (*FIRST, *ADDED) if clear in timeline.text] == []
    sealed = [
        entry["event"]["data"]["sealed_subjects"]
        for entry in timeline.json()["entries"]
        if entry["ce_type"] in ("incident.reported", "incident.report_filed")
    ]
    assert len(sealed) == 2 and all(value["kid"] and value["ct"] for value in sealed)

    # The next report names the read in its account of what happened.
    again = await audit.get(report_path(incident_id), headers=MASKED_READER)
    assert "查阅个人信息明文：对象姓名、身份证号" in again.text


async def test_the_log_shows_people_in_clear_only_with_pii_read_and_logs_each_read(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    audit = clients["audit"]
    incident_id = await report(clients)
    await act(
        clients,
        incident_id,
        "FIRST_RESPONSE_STARTED",
        actor_name="周强",
    )
    masked = await timeline_with(
        audit, incident_id, "incident.reported", also={"incident.action_recorded": 1}
    )
    # The reporter 李明 and the actor 周强: masked.
    assert [clear for clear in (*PEOPLE, PHONE) if clear in masked.text] == []
    action = next(e for e in masked.json()["entries"] if e["ce_type"] == "incident.action_recorded")
    reported = next(e for e in masked.json()["entries"] if e["ce_type"] == "incident.reported")
    assert reported["event"]["data"]["reporter"] == {
        "party": SFS,
        "name": "李*",
        "phone": "139****0000",
    }
    assert action["event"]["data"]["actor_name"] == "周*"
    assert action["event"]["data"]["party"] == "SFS:150626102"  # who acted stays in clear
    entry = await audit.get(f"/v1/log/entries/{action['index']}")
    assert entry.json()["event"]["data"]["actor_name"] == "周*"
    assert count_of("audit.personal_data_read", masked) == 0

    shown = await audit.get(f"/v1/incidents/{incident_id}/timeline", headers=CLEAR_READER)
    assert [clear for clear in PEOPLE if clear in shown.text] == list(PEOPLE)
    assert PHONE not in shown.text and "139****0000" in shown.text
    entry = await audit.get(f"/v1/log/entries/{action['index']}", headers=CLEAR_READER)
    assert entry.json()["event"]["data"]["actor_name"] == "周强"
    # Both clear reads are on the incident's log, from audit, naming what was read.
    timeline = await eventually(
        lambda: audit.get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: len(reads_by_audit(response)) >= 2,
    )
    assert [read["event"]["data"]["fields"] for read in reads_by_audit(timeline)] == [
        ["people.name", "people.phone", "free text"]
    ] * 2

    # The export: the leaf holds the actor's name sealed, for every reader of the log.
    lines = {line["index"]: line for line in await exported(audit) if "index" in line}
    leaf = json.loads(base64.b64decode(lines[action["index"]]["leaf"]))
    assert set(leaf["data"]["actor_name"]) == {"sealed"}
    assert leaf["data"]["party"] == SFS and "周强".encode() not in base64.b64decode(
        lines[action["index"]]["leaf"]
    )
