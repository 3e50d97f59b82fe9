"""Every list of intake, escalation and notification comes in pages: `limit` (at most 500,
100 by default) and `after`, the `next` of the page before. Walking the pages one item at a time
meets every item once, in the order of one large page; a cursor we did not give is a 422 naming
`after`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.helpers import act, eventually, obligations_when, report, violence_report

PII_READER = {"X-Act-As": "BLO incidents:read pii:read"}


async def walk(
    client: httpx.AsyncClient, path: str, field: str, limit: int = 1, **params: Any
) -> list[Any]:
    """Every item of the list at `path`, `limit` at a time, following `next` to its end."""
    items: list[Any] = []
    after: str | None = None
    while True:
        query = {**params, "limit": limit, **({"after": after} if after else {})}
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page[field]) <= limit
        items += page[field]
        after = page.get("next")
        if after is None:
            return items
        assert page[field], "a page that promises more is not empty"


async def whole(client: httpx.AsyncClient, path: str, field: str, **params: Any) -> list[Any]:
    response = await client.get(path, params={**params, "limit": 500})
    assert response.status_code == 200, response.text
    assert response.json().get("next") is None
    return response.json()[field]


async def assert_paged(
    client: httpx.AsyncClient,
    path: str,
    field: str,
    at_least: int,
    key: str = "id",
    **params: Any,
) -> list[Any]:
    """The walk one by one meets every item of the one large page once, in its order (an item
    added meanwhile comes after them), and the list holds at least `at_least` items; a
    made-up cursor and a limit above 500 are refused."""
    everything = await whole(client, path, field, **params)
    assert len(everything) >= at_least
    expected = [item[key] for item in everything]
    for limit in (1, 2):
        walked = [item[key] for item in await walk(client, path, field, limit, **params)]
        assert len(set(walked)) == len(walked), "no item twice"
        assert walked[: len(expected)] == expected
    for bad in ("not-a-cursor", "WzFd", "WzEsMl0=", "e30="):  # not base64 JSON; [1]; [1,2]; {}
        refused = await client.get(path, params={**params, "after": bad})
        assert refused.status_code == 422, (path, bad, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["field"] == "after"
    too_many = await client.get(path, params={**params, "limit": 501})
    assert too_many.status_code == 422
    return everything


async def test_an_incidents_reports_and_actions_are_paged(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    intake = clients["intake"]
    incident_id = await report(clients)
    for text in ("续报一", "续报二"):
        filed = await intake.post(
            f"/v1/incidents/{incident_id}/reports",
            json={
                "kind": "FOLLOW_UP",
                "reporter": violence_report()["reporter"],
                "changes": {},
                "text": text,
            },
        )
        assert filed.status_code == 201, filed.text
    for action in ("FIRST_RESPONSE_STARTED", "ON_SCENE", "COUNSELLING_DONE"):
        await act(clients, incident_id, action, note=f"{action}：王某某")

    reports = await assert_paged(intake, f"/v1/incidents/{incident_id}/reports", "items", 3)
    assert [r["kind"] for r in reports] == ["INITIAL", "FOLLOW_UP", "FOLLOW_UP"]
    actions = await assert_paged(intake, f"/v1/incidents/{incident_id}/actions", "items", 3)
    assert [a["action"] for a in actions] == [
        "FIRST_RESPONSE_STARTED",
        "ON_SCENE",
        "COUNSELLING_DONE",
    ]
    # The pages mask as the incident does, and show in clear to a reader with pii:read.
    assert all("王某某" not in a["note"] for a in actions)
    shown = await intake.get(f"/v1/incidents/{incident_id}/actions", headers=PII_READER)
    assert shown.json()["personal_data"] == "shown"
    assert shown.json()["items"][0]["note"] == "FIRST_RESPONSE_STARTED：王某某"
    # The incident itself embeds them (up to 100 each), with nothing more to follow here.
    incident = (await intake.get(f"/v1/incidents/{incident_id}")).json()
    assert [r["id"] for r in incident["reports"]] == [r["id"] for r in reports]
    assert [a["id"] for a in incident["actions"]] == [a["id"] for a in actions]
    assert incident["reports_next"] is None and incident["actions_next"] is None


async def test_candidates_are_paged_nearest_first(clients: dict[str, httpx.AsyncClient]) -> None:
    first = await report(clients, category="DISRUPTION", phase="SIGNS")
    await report(clients, category="DISRUPTION", phase="SIGNS")
    third = await report(clients, category="DISRUPTION", phase="SIGNS")
    candidates = await assert_paged(
        clients["intake"], f"/v1/incidents/{third}/candidates", "items", 2
    )
    assert first in {candidate["id"] for candidate in candidates}
    apart = [candidate["minutes_apart"] for candidate in candidates]
    assert [abs(minutes) for minutes in apart] == sorted(abs(minutes) for minutes in apart)


async def test_obligations_are_paged(clients: dict[str, httpx.AsyncClient]) -> None:
    incident_id = await report(clients)
    await obligations_when(clients, incident_id, lambda body: len(body["obligations"]) >= 3)
    await assert_paged(
        clients["escalation"], f"/v1/incidents/{incident_id}/obligations", "obligations", 3
    )


async def test_drill_compliance_is_paged(clients: dict[str, httpx.AsyncClient]) -> None:
    parties = await assert_paged(
        clients["escalation"], "/v1/drills/compliance", "items", 2, key="party"
    )
    codes = [party["party"] for party in parties]
    assert codes == sorted(codes) and len(set(codes)) == len(codes)


async def test_notifications_of_an_incident_are_paged(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    incident_id = await report(clients)
    await eventually(
        lambda: clients["notification"].get(
            "/v1/notifications", params={"incident_id": incident_id}
        ),
        lambda response: response.status_code == 200 and len(response.json()["items"]) >= 3,
    )
    await assert_paged(
        clients["notification"], "/v1/notifications", "items", 3, incident_id=incident_id
    )


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("intake", "/v1/incidents/{id}/reports"),
        ("intake", "/v1/incidents/{id}/actions"),
        ("intake", "/v1/incidents/{id}/candidates"),
        ("escalation", "/v1/incidents/{id}/obligations"),
        ("escalation", "/v1/drills/compliance"),
        ("notification", "/v1/notifications?incident_id={id}"),
    ],
)
async def test_a_page_is_at_most_500_and_100_by_default(
    clients: dict[str, httpx.AsyncClient], service: str, path: str
) -> None:
    incident_id = await report(clients)
    url = path.format(id=incident_id)
    for limit in (0, 501):
        refused = await clients[service].get(url, params={"limit": limit})
        assert refused.status_code == 422, (url, limit)
    spec = (await clients[service].get("/openapi.json")).json()
    route = path.split("?")[0].replace("{id}", "{incident_id}")
    parameters = {p["name"]: p for p in spec["paths"][route]["get"]["parameters"]}
    assert parameters["limit"]["schema"]["default"] == 100
    assert parameters["limit"]["schema"]["maximum"] == 500
    assert "after" in parameters
