"""The console's live hub (services/console/live.py): each open page hears only of incidents of
its township (all, for a party of the banner), and several pages of one user are several
listeners."""

from __future__ import annotations

import asyncio
import json
from uuid import uuid4

from services.console.live import LiveEvent, LiveFeed, LiveHub
from shared.domain.access import Principal
from shared.settings import Settings

TUKE_SFS = Principal("local:1", "SFS:150626102", frozenset())
GALUTU_SFS = Principal("local:2", "SFS:150626100", frozenset())
BANNER = Principal("local:3", "BLO", frozenset())


def change(incident: str, township: str | None) -> LiveEvent:
    return LiveEvent("incident.reported", "incidents.v1", incident, township)


async def opened(hub: LiveHub, principal: Principal):
    stream = hub.stream(principal)
    assert "event: ready" in await anext(stream)
    return stream


async def next_change(stream) -> dict:
    chunk = await asyncio.wait_for(anext(stream), 5)
    assert chunk.startswith("event: change\n"), chunk
    return json.loads(chunk.split("data: ", 1)[1])


async def test_each_page_hears_only_its_townships_incidents_and_the_banner_hears_all() -> None:
    hub = LiveHub()
    tuke, tuke_again = await opened(hub, TUKE_SFS), await opened(hub, TUKE_SFS)
    galutu, banner = await opened(hub, GALUTU_SFS), await opened(hub, BANNER)
    assert len(hub.listeners) == 4  # two pages of one user are two listeners

    hub.publish(change("a", "150626102"))
    hub.publish(change("unknown-place", None))
    hub.publish(change("b", "150626100"))

    assert (await next_change(tuke))["incident_id"] == "a"
    assert (await next_change(tuke_again))["incident_id"] == "a"
    assert (await next_change(galutu))["incident_id"] == "b"  # never "a", nor the unknown
    assert [(await next_change(banner))["incident_id"] for _ in range(3)] == [
        "a",
        "unknown-place",
        "b",
    ]
    for stream in (tuke, tuke_again, galutu, banner):
        await stream.aclose()
    assert not hub.listeners  # a closed page listens no more


async def test_an_event_fetched_before_its_incident_s_report_reaches_the_township_s_pages() -> None:
    # After a quiet spell one fetch brings the report and the events it caused, in the order of
    # their partitions: the place the report states counts for the whole fetch.
    hub = LiveHub()

    async def not_on_record(_incident: str) -> None:
        return None

    feed = LiveFeed(Settings(), hub, not_on_record)
    tuke, galutu = await opened(hub, TUKE_SFS), await opened(hub, GALUTU_SFS)
    incident = str(uuid4())

    def headers(type_: str) -> list[tuple[str, bytes]]:
        return [("ce_type", type_.encode()), ("ce_subject", incident.encode())]

    facts = json.dumps({"facts": {"township_code": "150626102"}}).encode()
    await feed.hand_on_batch(
        [
            ("escalations.v1", headers("obligation.created"), b"{}"),
            ("incidents.v1", headers("incident.reported"), facts),
        ]
    )
    assert [(await next_change(tuke))["type"] for _ in range(2)] == [
        "obligation.created",
        "incident.reported",
    ]
    hub.publish(change("later", "150626100"))
    assert (await next_change(galutu))["incident_id"] == "later"  # nothing of the other township
    for stream in (tuke, galutu):
        await stream.aclose()
