"""One trace per incident across the services; metrics that answer "is anything stuck"; logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.settings import SERVICE_NAMES
from tests.integration.helpers import eventually, report, timeline_with
from tests.support import clients_for, running_system


@pytest.fixture(scope="module")
async def traced(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Path, Any]]:
    work_dir = tmp_path_factory.mktemp("traced")
    async with running_system(
        work_dir, {"OTEL_TRACES_FILE": str(work_dir / "spans-{service}.jsonl")}
    ) as (_, processes):
        clients = clients_for(processes, work_dir)
        yield work_dir, (processes, clients)
        for client in clients.values():
            await client.aclose()


def spans_of(work_dir: Path) -> list[dict[str, Any]]:
    spans = []
    for path in work_dir.glob("spans-*.jsonl"):
        spans.extend(json.loads(line) for line in path.read_text("utf-8").splitlines() if line)
    return spans


async def acknowledge(clients, work_dir: Path, incident_id: str, party: str) -> None:
    """Follow the acknowledgement link of the alert the file channel wrote for `party`."""

    async def link() -> str | None:
        path = work_dir / "alerts.jsonl"
        lines = path.read_text("utf-8").splitlines() if path.exists() else []
        alerts = [json.loads(line) for line in lines]
        return next(
            (
                a["ack_url"]
                for a in alerts
                if a["incident_id"] == incident_id and a["party"] == party
            ),
            None,
        )

    ack_url = httpx.URL(await eventually(link, bool))
    response = await clients["notification"].post(ack_url.path, params=dict(ack_url.params))
    assert response.status_code == 200, response.text


async def test_one_incident_is_one_connected_trace_across_the_services(traced) -> None:
    work_dir, (_, clients) = traced
    incident_id = await report(clients)
    await timeline_with(clients["audit"], incident_id, "notification.delivered", at_least=3)
    await acknowledge(clients, work_dir, incident_id, "TCG:150626102")

    # Secrets never reach traces: the acknowledgement link's token is in no span (its query
    # is redacted wherever a URL is kept).
    ack_links = [
        json.loads(line)["ack_url"]
        for line in (work_dir / "alerts.jsonl").read_text("utf-8").splitlines()
        if line
    ]
    tokens = [httpx.URL(link).params["token"] for link in ack_links]
    acknowledged = await eventually(
        lambda: asyncio.sleep(0, spans_of(work_dir)),
        lambda found: any("/ack" in json.dumps(s["attributes"]) for s in found),
    )
    exported = json.dumps(acknowledged)
    assert tokens and not [token for token in tokens if token in exported]
    assert "[redacted]" in exported

    def the_trace(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every span (of any process) in the trace of the incident's report."""
        ids = {
            s["context"]["trace_id"]
            for s in found
            if s["name"] == "incidents.v1 publish"
            and s["attributes"].get("incident.id") == incident_id
        }
        return [s for s in found if s["context"]["trace_id"] in ids]

    def names(found: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(s["resource"]["attributes"]["service.name"], s["name"]) for s in found}

    wanted = {
        ("intake", "POST /v1/incidents"),
        ("intake", "incidents.v1 publish"),
        ("escalation", "incidents.v1 process"),
        ("escalation", "escalations.v1 publish"),
        ("notification", "escalations.v1 process"),
        ("notification", "notification send"),
        ("notification", "notification acknowledged"),
        ("notification", "notifications.v1 publish"),
        ("audit", "incidents.v1 process"),
        ("audit", "notifications.v1 process"),
    }
    trace = await eventually(
        lambda: asyncio.sleep(0, the_trace(spans_of(work_dir))),
        lambda found: names(found) >= wanted,
    )
    assert len({s["context"]["trace_id"] for s in trace}) == 1
    everything = {span["context"]["span_id"]: span for span in spans_of(work_dir)}
    roots = [s for s in trace if s["parent_id"] is None]
    assert [root["name"] for root in roots] == ["POST /v1/incidents"]
    for span in trace:  # every other span hangs off a span of the same trace
        assert span["parent_id"] is None or span["parent_id"] in everything
    # The acknowledgement event reached audit within the same trace.
    acknowledged = [
        s
        for s in trace
        if s["name"] == "notifications.v1 process"
        and s["resource"]["attributes"]["service.name"] == "audit"
    ]
    assert acknowledged
    sends = [s for s in trace if s["name"] == "notification send"]
    assert {s["attributes"]["channel"] for s in sends} == {"file"}
    assert {s["attributes"]["party"] for s in sends} >= {"PPS:150626102", "TCG:150626102", "BLO"}


EXPECTED_METRICS = {
    "intake": [
        "emergency_http_request_duration_seconds",
        "emergency_outbox_backlog_events",
        "emergency_outbox_oldest_age_seconds",
        "emergency_consumer_lag_records",
        "emergency_events_consumed_total",
        "emergency_outbox_published_events_total",
    ],
    "escalation": [
        "emergency_obligations",
        "emergency_obligations_overdue",
        "emergency_deadline_timer_delay_seconds",
        "emergency_consumer_lag_records",
        "emergency_events_consumed_total",
    ],
    "notification": [
        "emergency_consumer_lag_records",
        "emergency_outbox_backlog_events",
        "emergency_notification_attempts_total",
        "emergency_notification_delivery_latency_seconds",
        "emergency_notifications",
        "emergency_notification_deliveries_overdue",
    ],
    "audit": [
        "emergency_consumer_lag_records",
        "emergency_events_consumed_total",
        "emergency_audit_log_size",
        "emergency_audit_checkpoint_age_seconds",
        "emergency_audit_findings_lag_leaves",
    ],
}


async def test_every_service_exposes_its_metrics(traced) -> None:
    _, (_, clients) = traced
    await report(clients)
    await asyncio.sleep(1.0)
    for service, names in EXPECTED_METRICS.items():
        response = await clients[service].get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        for name in names:
            assert f"\n{name}" in response.text or response.text.startswith(name), (service, name)
    escalation = (await clients["escalation"].get("/metrics")).text
    assert 'emergency_obligations{status="PENDING"}' in escalation
    intake = (await clients["intake"].get("/metrics")).text
    assert 'route="/v1/incidents"' in intake


async def test_logs_are_json_with_trace_and_incident(traced) -> None:
    _, (processes, clients) = traced
    incident_id = await report(clients)

    async def lines_about_it() -> list[dict[str, Any]]:
        text = (processes.log_dir / "escalation.log").read_text("utf-8")
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("incident_id") == incident_id]

    lines = await eventually(lines_about_it, bool)
    fired = next(line for line in lines if line["message"].startswith("rules "))
    assert fired["message"].startswith("rules R1,R6,R9 fired")
    assert {"time", "level", "service", "logger", "trace_id", "span_id"} <= set(fired)
    assert fired["service"] == "escalation"


async def test_ready_means_database_broker_and_migrations(traced) -> None:
    _, (_, clients) = traced
    for service in SERVICE_NAMES:
        ready = await clients[service].get("/readyz")
        checks = ready.json()["checks"]
        assert {"database", "broker", "migrations"} <= set(checks)
        assert set(checks.values()) == {"ok"}


# What the Deployments give a pod between SIGTERM and SIGKILL (deploy/k8s/base).
POD_TERMINATION_GRACE_SECONDS = 60


async def test_sigterm_mid_stream_loses_nothing(traced) -> None:
    _, (processes, clients) = traced
    incident_ids = await asyncio.gather(
        *(report(clients, category="OTHER", phase="OCCURRED") for _ in range(30))
    )
    started = asyncio.get_running_loop().time()
    process = processes.processes["escalation"]
    # SIGTERM, then wait as long as a pod is given (terminationGracePeriodSeconds) before the
    # SIGKILL that would show as -9: the service keeps to its own grace inside that.
    processes.stop_one("escalation", timeout=POD_TERMINATION_GRACE_SECONDS)
    # uvicorn re-raises the SIGTERM it handled once the lifespan has shut down cleanly.
    assert process.returncode in (0, -15)
    assert asyncio.get_running_loop().time() - started < POD_TERMINATION_GRACE_SECONDS
    log = (processes.log_dir / "escalation.log").read_text("utf-8")
    assert "Application shutdown complete" in log
    processes.start_one("escalation")
    await processes.wait_ready("escalation")

    for incident_id in incident_ids:
        body = await eventually(
            lambda incident_id=incident_id: clients["escalation"].get(
                f"/v1/incidents/{incident_id}/obligations"
            ),
            lambda response: (
                response.status_code == 200 and len(response.json()["obligations"]) >= 2
            ),
        )
        rules = sorted(o["rule_id"] for o in body.json()["obligations"])
        assert rules == ["R1", "R9"]  # each exactly once: nothing lost, nothing doubled
