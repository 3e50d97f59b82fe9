"""The lists a duty console reads across incidents: incidents (intake), duties (escalation),
alerts (notification) and findings (audit), each filtered and paged by the one cursor.

Every filter keeps to the caller's jurisdiction: a 司法所, 指挥小组 or 派出所 sees only its own
township's incidents, duties and alerts, whatever it asks; the banner offices see all; a party
without the permission is refused 403; a bad filter value is a 422 naming the field."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from shared.problems import PROBLEM_MEDIA_TYPE
from shared.settings import Settings
from tests.integration.helpers import (
    act,
    eventually,
    find,
    obligations_when,
    report,
    subject_id,
)
from tests.integration.test_paging import assert_paged, walk
from tests.support import WebhookSink, execute_sql

TUKE, GALUTU = "150626102", "150626100"  # 图克镇, 嘎鲁图镇
AS_TUKE_SFS = {"X-Act-As": f"SFS:{TUKE}"}
AS_GALUTU_SFS = {"X-Act-As": f"SFS:{GALUTU}"}
AS_GALUTU_LOCALS = [{"X-Act-As": f"{kind}:{GALUTU}"} for kind in ("SFS", "TCG", "PPS")]
AS_BLO, AS_BJO, AS_PLATFORM = {"X-Act-As": "BLO"}, {"X-Act-As": "BJO"}, {"X-Act-As": "PLATFORM"}
REFUSED_READERS = ("CEO", "PRO", "AUDITOR", "DEC:court-150626")


async def every_item(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str],
    field: str = "items",
    **params: Any,
) -> list[dict[str, Any]]:
    """Every item of the list at `path` the caller sees, page after page."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        query = {**params, "limit": 500, **({"after": after} if after else {})}
        response = await client.get(path, params=query, headers=headers)
        assert response.status_code == 200, (path, params, response.text)
        items += response.json()[field]
        after = response.json().get("next")
        if after is None:
            return items


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    if field is not None:
        # A repeatable filter names the value too: `status.0`.
        named = {error["field"].split(".")[0] for error in response.json()["errors"]}
        assert field in named, response.text


def tagged(tag: str, n: int = 0) -> list[dict[str, str]]:
    """A subject whose id carries `tag`: a search for the tag finds its incident."""
    return [{"id": f"SQJZ-{tag}-{n}", "name": "王某某", "id_number": "150626199001011234"}]


async def report_in(
    clients: dict[str, httpx.AsyncClient], township: str, tag: str, n: int = 0, **more: Any
) -> str:
    """An incident of `township` (code), reported by its 司法所, its subject's id tagged."""
    return await report(
        clients,
        township=township,
        subjects=tagged(tag, n),
        reporter={"party": f"SFS:{township}", "name": "李明", "phone": "13900000000"},
        **more,
    )


# --- intake: GET /v1/incidents ----------------------------------------------------------------


async def listed(
    clients: dict[str, httpx.AsyncClient], headers: dict[str, str] = AS_BLO, **params: Any
) -> list[str]:
    return [
        item["id"]
        for item in await every_item(clients["intake"], "/v1/incidents", headers, **params)
    ]


async def test_incidents_are_listed_newest_first_paged_with_what_a_list_shows(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    tag = uuid.uuid4().hex[:10]
    ids = [await report_in(clients, TUKE, tag, n) for n in range(3)]
    items = await assert_paged(clients["intake"], "/v1/incidents", "items", 3, q=tag)
    assert [item["id"] for item in items] == ids[::-1]
    newest = items[0]
    assert (newest["township_code"], newest["township_name"]) == (TUKE, "图克镇")
    assert (newest["category"], newest["phase"], newest["status"]) == (
        "VIOLENCE",
        "IN_PROGRESS",
        "REPORTED",
    )
    assert (newest["subjects"], newest["reports"], newest["actions"]) == (1, 1, 0)
    assert newest["reporter_party"] == f"SFS:{TUKE}"
    # The summary is masked as in the incident, for a reader holding pii:read too.
    for reader in ("BLO", "BLO incidents:read pii:read"):
        shown = await clients["intake"].get(
            "/v1/incidents", params={"q": tag}, headers={"X-Act-As": reader}
        )
        assert shown.json()["personal_data"] == "masked"
        summary = shown.json()["items"][0]["summary"]
        assert "王某某" not in summary and "王**" in summary, summary


async def test_incidents_filtered_by_status(clients: dict[str, httpx.AsyncClient]) -> None:
    tag = uuid.uuid4().hex[:10]
    reported, controlled = [await report_in(clients, TUKE, tag, n) for n in range(2)]
    await act(clients, controlled, "CONTROLLED")
    assert await listed(clients, q=tag, status="REPORTED") == [reported]
    assert await listed(clients, q=tag, status="CONTROLLED") == [controlled]
    assert await listed(clients, q=tag, status=["REPORTED", "CONTROLLED"]) == [controlled, reported]
    assert_problem(
        await clients["intake"].get("/v1/incidents", params={"status": "OPEN"}), 422, "status"
    )


async def test_incidents_filtered_by_township_code_or_name(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    tag = uuid.uuid4().hex[:10]
    tuke, galutu = await report_in(clients, TUKE, tag, 0), await report_in(clients, GALUTU, tag, 1)
    assert await listed(clients, q=tag) == [galutu, tuke]
    assert await listed(clients, q=tag, township=TUKE) == [tuke]
    assert await listed(clients, q=tag, township="嘎鲁图镇") == [galutu]
    unknown = await clients["intake"].get("/v1/incidents", params={"township": "呼和浩特"})
    assert_problem(unknown, 422, "township")


async def test_incidents_filtered_by_category(clients: dict[str, httpx.AsyncClient]) -> None:
    tag = uuid.uuid4().hex[:10]
    violence = await report_in(clients, TUKE, tag, 0)
    other = await report_in(clients, TUKE, tag, 1, category="OTHER", phase="OCCURRED")
    assert await listed(clients, q=tag, category="OTHER") == [other]
    assert await listed(clients, q=tag, category="VIOLENCE") == [violence]
    assert_problem(
        await clients["intake"].get("/v1/incidents", params={"category": "FIRE"}), 422, "category"
    )


async def test_incidents_filtered_by_reported_time(clients: dict[str, httpx.AsyncClient]) -> None:
    tag = uuid.uuid4().hex[:10]
    first, second = [await report_in(clients, TUKE, tag, n) for n in range(2)]
    (second_item, first_item) = await every_item(clients["intake"], "/v1/incidents", AS_BLO, q=tag)
    assert (first_item["id"], second_item["id"]) == (first, second)
    boundary = second_item["reported_at"]
    # `since` takes the moment itself, `until` stops before it.
    assert await listed(clients, q=tag, since=boundary) == [second]
    assert await listed(clients, q=tag, until=boundary) == [first]
    assert await listed(clients, q=tag, since=first_item["reported_at"], until=boundary) == [first]
    intake = clients["intake"]
    naive = await intake.get("/v1/incidents", params={"since": "2026-01-01T00:00:00"})
    assert_problem(naive, 422, "since")
    backwards = await intake.get("/v1/incidents", params={"since": boundary, "until": boundary})
    assert_problem(backwards, 422, "until")


async def test_incidents_searched_in_what_is_stored_in_clear_only(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    tag = uuid.uuid4().hex[:10]
    reference = f"JQ-{uuid.uuid4().hex[:12].upper()}"
    word = f"暗语{uuid.uuid4().hex[:8]}"
    incident_id = await report_in(
        clients,
        TUKE,
        tag,
        external_ref=reference,
        summary=f"社区矫正对象王某某称{word}，扬言伤人。",
        location=f"图克镇{word}街",
    )
    assert await listed(clients, q=f"sqjz-{tag}") == [incident_id]  # part of a subject id
    assert await listed(clients, q=reference[3:].lower()) == [incident_id]  # a reference
    assert await listed(clients, q=incident_id[:13]) == [incident_id]  # the id's start
    # Sealed at rest: summaries, locations and names are never searched, so a search tells
    # nobody without pii:read what they hold.
    for sealed in (word, "150626199001011234"):
        assert await listed(clients, q=sealed) == []
    # Wildcards are text like any other.
    assert incident_id not in await listed(clients, q="%", township=TUKE)
    for unsearchable in ("", "a\x00b", "x" * 65):
        refused = await clients["intake"].get("/v1/incidents", params={"q": unsearchable})
        assert_problem(refused, 422, "q")


async def test_a_local_party_lists_only_its_own_townships_incidents_whatever_it_asks(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    tag = uuid.uuid4().hex[:10]
    tuke = await report_in(clients, TUKE, tag, 0, external_ref=f"JQ-{tag}")
    galutu = await report_in(clients, GALUTU, tag, 1)
    asks: list[dict[str, Any]] = [
        {},
        {"q": tag},
        {"q": f"JQ-{tag}"},
        {"q": tuke[:13]},
        {"status": "REPORTED"},
        {"category": "VIOLENCE"},
        {"since": "2000-01-01T00:00:00+08:00"},
        {"until": "2100-01-01T00:00:00+08:00"},
        {"township": GALUTU, "q": tag},
    ]
    for headers in AS_GALUTU_LOCALS:
        for ask in asks:
            items = await every_item(clients["intake"], "/v1/incidents", headers, **ask)
            assert {item["township_code"] for item in items} <= {GALUTU}, (headers, ask)
            assert tuke not in {item["id"] for item in items}, (headers, ask)
        assert await listed(clients, headers, q=tag) == [galutu]
        # Asking for another township is refused, not answered with an empty list.
        for township in (TUKE, "图克镇"):
            other = await clients["intake"].get(
                "/v1/incidents", params={"township": township}, headers=headers
            )
            assert_problem(other, 403)
    for reader in (AS_BLO, AS_BJO, AS_PLATFORM):
        assert await listed(clients, reader, q=tag) == [galutu, tuke]
    for refused in REFUSED_READERS:
        answer = await clients["intake"].get("/v1/incidents", headers={"X-Act-As": refused})
        assert_problem(answer, 403)


async def moved_to_galutu(clients: dict[str, httpx.AsyncClient], incident_id: str) -> None:
    """The banner office corrects the incident's township to 嘎鲁图镇."""
    moved = await clients["intake"].post(
        f"/v1/incidents/{incident_id}/reports",
        json={
            "kind": "CORRECTION",
            "reporter": {"party": "BLO", "name": "张伟"},
            "changes": {"township": "嘎鲁图镇"},
            "reason": "报告时乡镇填错",
        },
    )
    assert moved.status_code == 201, moved.text


async def test_a_township_correction_moves_the_incident_between_local_lists(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    tag = uuid.uuid4().hex[:10]
    incident_id = await report_in(clients, TUKE, tag)
    await moved_to_galutu(clients, incident_id)
    assert await listed(clients, AS_GALUTU_SFS, q=tag) == [incident_id]
    assert await listed(clients, AS_TUKE_SFS, q=tag) == []


# --- escalation: GET /v1/obligations ------------------------------------------------------------


async def duties(
    clients: dict[str, httpx.AsyncClient], headers: dict[str, str] = AS_BLO, **params: Any
) -> list[dict[str, Any]]:
    return await every_item(clients["escalation"], "/v1/obligations", headers, **params)


async def with_duties(clients: dict[str, httpx.AsyncClient], township: str) -> tuple[str, dict]:
    """An incident of `township` and its obligations, once its 司法所's are made."""
    incident_id = await report_in(clients, township, uuid.uuid4().hex[:10])
    body = await obligations_when(
        clients, incident_id, lambda body: find(body, party=f"SFS:{township}")
    )
    return incident_id, body


def of_incident(items: list[dict[str, Any]], incident_id: str) -> set[str]:
    return {item["id"] for item in items if item["incident_id"] == incident_id}


async def test_duties_across_incidents_are_paged_soonest_due_first_with_their_why(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id, body = await with_duties(clients, TUKE)
    escalation = clients["escalation"]
    ask = {"party": f"SFS:{TUKE}"}
    everything = await duties(clients, **ask)
    # Walked a few at a time: each once, soonest due first. Duties other incidents gain
    # meanwhile fall anywhere in that order, so the walk holds the large page, not only it.
    walked = await walk(escalation, "/v1/obligations", "items", 3, **ask)
    assert len({item["id"] for item in walked}) == len(walked)
    assert {item["id"] for item in everything} <= {item["id"] for item in walked}
    order = [(moment(item["due_at"]), item["id"]) for item in walked]
    assert order == sorted(order)
    for bad in ("not-a-cursor", "WzFd", "e30="):
        assert_problem(await escalation.get("/v1/obligations", params={"after": bad}), 422, "after")
    assert_problem(await escalation.get("/v1/obligations", params={"limit": 501}), 422, "limit")
    per_incident = {duty["id"]: duty for duty in body["obligations"]}
    shown = [item for item in everything if item["id"] in per_incident]
    assert shown
    for item in shown:
        expected = {**per_incident[item["id"]], "incident_id": incident_id, "township_code": TUKE}
        assert item == expected


async def test_duties_filtered_by_owner(clients: dict[str, httpx.AsyncClient]) -> None:
    incident_id, body = await with_duties(clients, TUKE)
    owner = f"SFS:{TUKE}"
    owned = {
        duty["id"] for duty in body["obligations"] if (duty["owner"] or duty["party"]) == owner
    }
    assert owned
    items = await duties(clients, party=owner)
    assert {item["owner"] or item["party"] for item in items} == {owner}
    assert owned <= of_incident(items, incident_id)
    assert_problem(
        await clients["escalation"].get("/v1/obligations", params={"party": "SFS:1"}), 422, "party"
    )


async def test_duties_filtered_by_status(clients: dict[str, httpx.AsyncClient]) -> None:
    incident_id, body = await with_duties(clients, TUKE)
    pending = {duty["id"] for duty in body["obligations"] if duty["status"] == "PENDING"}
    items = await duties(clients, status="PENDING")
    assert {item["status"] for item in items} == {"PENDING"}
    assert pending <= of_incident(items, incident_id)
    assert not of_incident(await duties(clients, status=["MET", "WAIVED"]), incident_id) & pending
    assert_problem(
        await clients["escalation"].get("/v1/obligations", params={"status": "DONE"}), 422, "status"
    )


async def aged(infra_settings: Settings, obligation_id: str) -> None:
    """The obligation's deadline moved a minute into the past, as if it were that late."""
    await execute_sql(
        infra_settings,
        "UPDATE escalation.obligations SET due_at = $2 WHERE id = $1",
        uuid.UUID(obligation_id),
        datetime.now(UTC) - timedelta(minutes=1),
    )


async def test_duties_filtered_by_deadline_and_overdue(
    clients: dict[str, httpx.AsyncClient], infra_settings: Settings
) -> None:
    incident_id, body = await with_duties(clients, TUKE)
    late = next(duty for duty in body["obligations"] if duty["status"] == "PENDING")
    await aged(infra_settings, late["id"])
    soon = datetime.now(UTC)
    due = await duties(clients, due_before=soon.isoformat())
    assert all(moment(item["due_at"]) < soon for item in due)
    assert late["id"] in of_incident(due, incident_id)
    # Overdue: undone past its deadline, pending still or already marked MISSED by it.
    overdue = await eventually(
        lambda: duties(clients, overdue="true"),
        lambda items: late["id"] in of_incident(items, incident_id),
    )
    assert {item["status"] for item in overdue} <= {"PENDING", "MISSED"}
    # A pending one is late by its clock; a missed one by its status, whatever its due time
    # says (the suite's other incidents hold duties missed in other ways too).
    now = datetime.now(UTC)
    assert all(moment(item["due_at"]) < now for item in overdue if item["status"] == "PENDING")
    others = await duties(clients, overdue="false")
    assert late["id"] not in of_incident(others, incident_id)
    assert all(
        item["status"] != "MISSED"
        and (item["status"] != "PENDING" or moment(item["due_at"]) > soon)
        for item in others
    )
    assert_problem(
        await clients["escalation"].get("/v1/obligations", params={"due_before": "tomorrow"}),
        422,
        "due_before",
    )


async def test_a_local_party_sees_only_its_own_townships_duties_whatever_it_asks(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    tuke, _ = await with_duties(clients, TUKE)
    galutu, _ = await with_duties(clients, GALUTU)
    asks: list[dict[str, Any]] = [
        {},
        {"party": f"SFS:{TUKE}"},
        {"party": f"SFS:{GALUTU}"},
        {"party": "BLO"},
        {"status": "PENDING"},
        {"due_before": "2100-01-01T00:00:00+08:00"},
        {"overdue": "true"},
        {"overdue": "false"},
    ]
    for headers in AS_GALUTU_LOCALS:
        for ask in asks:
            items = await duties(clients, headers, **ask)
            assert {item["township_code"] for item in items} <= {GALUTU}, (headers, ask)
            assert not of_incident(items, tuke), (headers, ask)
        assert of_incident(await duties(clients, headers), galutu)
    for reader in (AS_BLO, AS_BJO, AS_PLATFORM):
        items = await duties(clients, reader)
        assert of_incident(items, tuke) and of_incident(items, galutu)
    for refused in REFUSED_READERS:
        answer = await clients["escalation"].get("/v1/obligations", headers={"X-Act-As": refused})
        assert_problem(answer, 403)


async def test_a_township_correction_moves_the_duties_between_local_lists(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id, _ = await with_duties(clients, TUKE)
    await moved_to_galutu(clients, incident_id)
    await eventually(
        lambda: duties(clients, AS_GALUTU_SFS),
        lambda items: bool(of_incident(items, incident_id)),
    )
    assert not of_incident(await duties(clients, AS_TUKE_SFS), incident_id)


# --- notification: GET /v1/notifications --------------------------------------------------------


async def alerts(
    clients: dict[str, httpx.AsyncClient], headers: dict[str, str] = AS_BLO, **params: Any
) -> list[dict[str, Any]]:
    return await every_item(clients["notification"], "/v1/notifications", headers, **params)


async def alerted(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink, township: str
) -> tuple[str, list[dict[str, Any]]]:
    """An incident of `township` its 司法所 reported, once its 派出所 was alerted; the alerts
    sent about it."""
    incident_id = await report_in(clients, township, uuid.uuid4().hex[:10])
    sent = await webhook_sink.wait_for(incident_id, {f"PPS:{township}"})
    return incident_id, sent


def about(items: list[dict[str, Any]], incident_id: str) -> set[str]:
    return {item["id"] for item in items if item["incident_id"] == incident_id}


async def test_alerts_without_an_incident_by_party_and_status_not_yet_acknowledged(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id, sent = await alerted(clients, webhook_sink, TUKE)
    pps = f"PPS:{TUKE}"  # the 派出所, alerted to act
    mine = await alerts(clients, party=pps)
    assert {item["party"] for item in mine} == {pps}
    asking = {
        item["id"]
        for item in mine
        if item["incident_id"] == incident_id
        and item["kind"] == "ALERT"
        and item["status"] in ("NEW", "PENDING", "DELIVERED")
    }
    assert asking
    waiting = await alerts(clients, party=pps, status="NOT_ACKNOWLEDGED")
    assert {(item["kind"], item["acknowledged_at"]) for item in waiting} == {("ALERT", None)}
    assert {item["status"] for item in waiting} <= {
        "NEW",
        "PENDING",
        "DELIVERED",
        "UNACKNOWLEDGED",
        "FAILED",
    }
    assert asking <= about(waiting, incident_id)

    # Acknowledged through the link it carried: it leaves the board.
    link = next(alert["ack_url"] for alert in sent if alert["party"] == pps and alert["ack_url"])
    found = re.search(r"/v1/notifications/([0-9a-f-]{36})/ack", link)
    assert found is not None
    acknowledged_id = found.group(1)
    parts = urlsplit(link)
    answer = await clients["notification"].post(f"{parts.path}?{parts.query}")
    assert answer.status_code == 200, answer.text
    done = await alerts(clients, party=pps, status="ACKNOWLEDGED")
    assert {item["status"] for item in done} == {"ACKNOWLEDGED"}
    assert acknowledged_id in about(done, incident_id)
    still = await alerts(clients, party=pps, status="NOT_ACKNOWLEDGED")
    assert acknowledged_id not in about(still, incident_id)
    either = await alerts(clients, party=pps, status=["ACKNOWLEDGED", "NOT_ACKNOWLEDGED"])
    assert asking <= about(either, incident_id)
    assert_problem(
        await clients["notification"].get("/v1/notifications", params={"status": "SEEN"}),
        422,
        "status",
    )


async def test_an_incidents_alerts_are_still_listed_by_its_id(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    incident_id, _ = await alerted(clients, webhook_sink, TUKE)
    items = await assert_paged(
        clients["notification"], "/v1/notifications", "items", 1, incident_id=incident_id
    )
    assert {item["incident_id"] for item in items} == {incident_id}
    assert [item["created_at"] for item in items] == sorted(item["created_at"] for item in items)
    local = await alerts(clients, AS_TUKE_SFS, incident_id=incident_id, status="NOT_ACKNOWLEDGED")
    assert {item["incident_id"] for item in local} <= {incident_id}


async def test_a_local_party_sees_only_its_own_townships_alerts_whatever_it_asks(
    clients: dict[str, httpx.AsyncClient], webhook_sink: WebhookSink
) -> None:
    tuke, _ = await alerted(clients, webhook_sink, TUKE)
    galutu, _ = await alerted(clients, webhook_sink, GALUTU)
    asks: list[dict[str, Any]] = [
        {},
        {"party": f"SFS:{TUKE}"},
        {"party": "BLO"},
        {"status": "NOT_ACKNOWLEDGED"},
        {"status": ["DELIVERED", "PENDING", "NEW", "INFORMED"]},
        {"party": f"SFS:{TUKE}", "status": "NOT_ACKNOWLEDGED"},
    ]
    for headers in AS_GALUTU_LOCALS:
        for ask in asks:
            items = await alerts(clients, headers, **ask)
            assert not about(items, tuke), (headers, ask)
        assert about(await alerts(clients, headers), galutu)
        other = await clients["notification"].get(
            "/v1/notifications", params={"incident_id": tuke}, headers=headers
        )
        assert_problem(other, 403)
    for reader in (AS_BLO, AS_BJO, AS_PLATFORM):
        items = await alerts(clients, reader)
        assert about(items, tuke) and about(items, galutu)
    for refused in REFUSED_READERS:
        answer = await clients["notification"].get(
            "/v1/notifications", headers={"X-Act-As": refused}
        )
        assert_problem(answer, 403)


# --- audit: GET /v1/findings ----------------------------------------------------------------------


async def concealed(clients: dict[str, httpx.AsyncClient]) -> tuple[str, dict[str, Any]]:
    """An incident reported three hours after its discovery, and its R12 finding."""
    now = datetime.now(UTC)
    incident_id = await report(
        clients,
        category="OTHER",
        subjects=[{"id": subject_id(), "name": "王某某"}],
        occurred_at=(now - timedelta(hours=4)).isoformat(),
        discovered_at=(now - timedelta(hours=3)).isoformat(),
    )
    found = await eventually(
        lambda: clients["audit"].get("/v1/findings", params={"incident_id": incident_id}),
        lambda response: any(f["rule_id"] == "R12" for f in response.json()["findings"]),
    )
    return incident_id, next(f for f in found.json()["findings"] if f["rule_id"] == "R12")


async def in_state(
    clients: dict[str, httpx.AsyncClient], incident_id: str, *states: str
) -> list[dict[str, Any]]:
    return await every_item(
        clients["audit"],
        "/v1/findings",
        AS_BLO,
        "findings",
        incident_id=incident_id,
        review_status=list(states),
    )


async def test_findings_filtered_by_review_status(clients: dict[str, httpx.AsyncClient]) -> None:
    incident_id, finding = await concealed(clients)
    key = finding["finding_id"]

    def ids(items: list[dict[str, Any]]) -> set[str]:
        return {item["finding_id"] for item in items}

    assert key in ids(await in_state(clients, incident_id, "OPEN"))
    assert key not in ids(await in_state(clients, incident_id, "CONFIRMED", "DISMISSED"))
    review = f"/v1/findings/{key}/review"
    confirmed = await clients["audit"].post(
        review, json={"decision": "CONFIRMED", "reason": "经核实，延误报告。"}, headers=AS_BJO
    )
    assert confirmed.status_code == 201, confirmed.text
    assert key in ids(await in_state(clients, incident_id, "CONFIRMED"))
    assert key not in ids(await in_state(clients, incident_id, "OPEN"))
    dismissed = await clients["audit"].post(
        review, json={"decision": "DISMISSED", "reason": "市局复核，不予认定。"}, headers=AS_BJO
    )
    assert dismissed.status_code == 201, dismissed.text
    (shown,) = [
        f for f in await in_state(clients, incident_id, "DISMISSED") if f["finding_id"] == key
    ]
    assert shown["state"] == "DISMISSED"
    assert key not in ids(await in_state(clients, incident_id, "CONFIRMED"))
    # Across incidents, paged: each finding listed is in the state asked for.
    for states in (["OPEN"], ["DISMISSED"], ["SUPERSEDED"], ["CONFIRMED", "SUPERSEDED"]):
        everywhere = await every_item(
            clients["audit"], "/v1/findings", AS_BLO, "findings", review_status=states
        )
        assert {item["state"] for item in everywhere} <= set(states)
    dismissed_everywhere = await assert_paged(
        clients["audit"], "/v1/findings", "findings", 1, "finding_id", review_status="DISMISSED"
    )
    assert key in ids(dismissed_everywhere)
    assert_problem(
        await clients["audit"].get("/v1/findings", params={"review_status": "CLOSED"}),
        422,
        "review_status",
    )


@pytest.mark.parametrize("headers", [*AS_GALUTU_LOCALS, AS_TUKE_SFS, AS_PLATFORM])
async def test_findings_are_refused_to_local_parties_and_the_platform_whatever_they_ask(
    clients: dict[str, httpx.AsyncClient], headers: dict[str, str]
) -> None:
    for ask in ({}, {"review_status": "OPEN"}, {"party": f"SFS:{TUKE}"}, {"rule": "R12"}):
        answer = await clients["audit"].get("/v1/findings", params=ask, headers=headers)
        assert_problem(answer, 403)
