"""Point 5 of the console: the incident page links its trace, and locally the console shows
it: the waterfall of the spans the services sent it, from intake's POST to the
acknowledgement of an alert."""

from __future__ import annotations

import gzip
import re

import httpx

from shared.settings import CONSOLE
from tests.integration.helpers import eventually, report
from tests.support import WebhookSink, log_in
from tools.devrun import ServiceProcesses

# (service, span) rows the waterfall shows once the incident went all the way round.
WANTED = {
    ("intake", "POST /v1/incidents"),
    ("escalation", "incidents.v1 process"),
    ("notification", "escalations.v1 process"),
    ("notification", "notification send"),
    ("notification", "notification acknowledged"),
    # The request that followed the acknowledgement link: a trace of its own, linked.
    ("notification", "POST /v1/notifications/{notification_id}/ack"),
}


ROW = re.compile(
    r'<tr class="span(?P<classes>[^"]*)" data-service="(?P<service>[^"]+)"'
    r'.*? data-depth="(?P<depth>\d+)".*?<td class="span-name[^"]*">(?P<name>[^<]+?)\s*<span',
    re.DOTALL,
)


def rows_of(html: str) -> list[tuple[str, str, int, bool]]:
    """(service, span name, depth, linked) of each row of the waterfall, in order."""
    return [
        (row["service"], row["name"].strip(), int(row["depth"]), "linked" in row["classes"])
        for row in ROW.finditer(html)
    ]


def names_of(html: str) -> set[tuple[str, str]]:
    return {(service, name) for service, name, _, _ in rows_of(html)}


async def test_the_incident_page_links_the_waterfall_of_its_trace_from_report_to_acknowledgement(
    system: ServiceProcesses,
    clients: dict[str, httpx.AsyncClient],
    webhook_sink: WebhookSink,
    browser: httpx.AsyncClient,
) -> None:
    incident_id = await report(clients)
    alerts = await webhook_sink.wait_for(
        incident_id, {"TCG:150626102"}, lambda alert: alert["ack_url"]
    )
    alert = next(a for a in alerts if a["party"] == "TCG:150626102" and a["ack_url"])
    link = httpx.URL(alert["ack_url"])
    acknowledged = await clients["notification"].post(link.path, params=dict(link.params))
    assert acknowledged.status_code == 200, acknowledged.text

    await log_in(browser, "BLO")
    incident_page = await eventually(
        lambda: browser.get(f"/incidents/{incident_id}"),
        lambda response: response.status_code == 200 and 'id="trace-link"' in response.text,
    )
    trace_url = re.search(r'href="([^"]+)" id="trace-link"', incident_page.text).group(1)
    assert trace_url == f"/incidents/{incident_id}/trace"

    # The services export in batches, a second apart: the page fills as they arrive.
    shown = await eventually(
        lambda: browser.get(trace_url),
        lambda response: response.status_code == 200 and names_of(response.text) >= WANTED,
    )
    assert "调用链" in shown.text
    assert not re.search(r'(src|href)="https?://', shown.text)  # nothing from elsewhere
    # One trace: intake's POST is its root, every wanted span hangs under it; the request that
    # followed the acknowledgement link is shown with it, marked as linked.
    rows = rows_of(shown.text)
    assert rows[0] == ("intake", "POST /v1/incidents", 0, False)
    for _, name, depth, linked in rows:
        if name == "notification acknowledged":
            assert depth > 0 and not linked
        if name.endswith("/ack"):
            assert linked
    assert "关联请求" in shown.text
    # No query string (the acknowledgement's token) reached a span.
    assert link.params["token"] not in shown.text

    # Somebody who may not read the incident does not see how it travelled either.
    async with httpx.AsyncClient(base_url=system.url(CONSOLE)) as stranger:
        await log_in(stranger, "SFS:150626101")
        refused = await stranger.get(trace_url)
        assert refused.status_code == 403
        assert "POST /v1/incidents" not in refused.text
    async with httpx.AsyncClient(base_url=system.url(CONSOLE)) as anonymous:
        assert (await anonymous.get(trace_url)).status_code == 303  # to the login


async def test_the_receiver_takes_only_otlp_exports(system: ServiceProcesses) -> None:
    async with httpx.AsyncClient(base_url=system.url(CONSOLE)) as exporter:
        garbage = await exporter.post(
            "/v1/traces",
            content=b"\xff\xff not protobuf",
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert garbage.status_code == 400
        assert garbage.headers["content-type"] == "application/problem+json"
        as_json = await exporter.post("/v1/traces", json={"resourceSpans": []})
        assert as_json.status_code == 415
        empty = await exporter.post(
            "/v1/traces",
            content=gzip.compress(b""),
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
        assert empty.status_code == 200
