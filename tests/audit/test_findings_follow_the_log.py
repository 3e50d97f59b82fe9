"""A defect in the findings code on the running stack: every event still becomes a leaf, the log
verifies against a signed checkpoint, the findings lag and say so, and they catch up by
themselves once the defect is gone.

The defect is injected where the service is composed: this module runs intake, escalation and
notification as processes, as everywhere else, and the audit service in the test's own process,
built by `create_app(settings, findings_function=...)` with a findings function the test can
break and mend. Nothing a deployment can set (an environment variable, a module path) selects
findings code, so no production setting can switch findings off; and mending the function in
place is what a fixed release does, without a restart that would hide whether the follower
recovers by itself.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.audit.app import create_app, findings_function_of
from services.audit.findings import PERSONAL_READ, LoggedEvent
from services.audit.follower import FindingsFunction
from services.audit.note import Checkpoint, Signer, open_checkpoint
from services.audit.personal import PERSONAL
from services.audit.verify import Source, verify_log
from shared.events.models import AccountabilityFinding, LogCheckpoint
from shared.pii import is_sealed
from shared.settings import Settings
from tests import support
from tests.integration.helpers import count_of, eventually, report
from tests.support import PartyAuth, clients_for, running_system, serving
from tools.devrun import ServiceProcesses, development_secrets
from tools.localinfra import Infrastructure, free_port

ORIGIN = "sqjz.wushen.example/audit-defect-test"
LOG_SEED = bytes(range(64, 96))
DEFECT = "an injected defect of the findings code"


def personal_values(value: Any) -> Iterator[tuple[str, Any]]:
    """(name, value) of every personal field in an event's data, wherever it is."""
    if isinstance(value, list):
        for item in value:
            yield from personal_values(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in PERSONAL and item is not None:
                yield key, item
            else:
                yield from personal_values(item)


@dataclass
class Mendable:
    """The real findings code, with a defect in front of it until `mend` is called."""

    real: FindingsFunction
    broken: bool = True
    refused: list[UUID] = field(default_factory=list)
    # What the findings were last given of each incident's log.
    judged: dict[UUID, Sequence[LoggedEvent]] = field(default_factory=dict)

    def __call__(
        self, incident_id: UUID, events: Sequence[LoggedEvent]
    ) -> list[AccountabilityFinding]:
        if self.broken:
            self.refused.append(incident_id)
            raise KeyError(DEFECT)
        self.judged[incident_id] = events
        return self.real(incident_id, events)

    def mend(self) -> None:
        self.broken = False


@dataclass(frozen=True)
class Stack:
    infra: Infrastructure
    processes: ServiceProcesses
    clients: dict[str, httpx.AsyncClient]
    findings: Mendable
    log_signer: Signer


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    work_dir = Path(tmp_path_factory.mktemp("findings-defect"))
    log_signer = Signer.from_seed(ORIGIN, LOG_SEED)
    others = ("intake", "escalation", "notification")
    async with running_system(work_dir, {}, services=others) as (infra, processes):
        environment = {
            **infra.environment(),
            **development_secrets(work_dir),
            "ALERTS_FILE": str(work_dir / "alerts.jsonl"),
            "LOCAL_DATA_DIR": str(work_dir),
            "LOG_JSON": "false",
            "AUDIT_LOG_ORIGIN": ORIGIN,
            "AUDIT_SIGNING_KEY_SEED": base64.b64encode(LOG_SEED).decode(),
            "AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0.5",
            "AUDIT_FINDINGS_POLL_INTERVAL_SECONDS": "0.2",
            "AUDIT_FINDINGS_RETRY_MAX_SECONDS": "1",
        }
        with pytest.MonkeyPatch.context() as patch:  # read as the service processes read it
            for name, value in environment.items():
                patch.setenv(name, value)
            settings = Settings()
        findings = Mendable(findings_function_of(settings))
        port = free_port()
        async with serving(create_app(settings, findings), port, lifespan="on"):
            clients = clients_for(processes, work_dir)
            clients["audit"] = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                timeout=support.PATIENCE_SECONDS,
                auth=PartyAuth(support.test_keys(work_dir)[0]),
            )
            try:
                yield Stack(infra, processes, clients, findings, log_signer)
            finally:
                for client in clients.values():
                    await client.aclose()


OUTBOX_EVENTS = " UNION ALL ".join(
    f"SELECT headers->>'ce_source' AS source, event_id FROM {service}.outbox"
    for service in ("intake", "escalation", "notification", "audit")
)


@dataclass(frozen=True)
class LogState:
    written: int  # events the services wrote
    missing: int  # of those, not in the log
    twice: int  # events in the log more than once
    size: int
    settled_size: int  # the log up to its last leaf that is not a checkpoint
    cursor: int
    findings: int


async def log_state(infra: Infrastructure) -> LogState:
    connection = await asyncpg.connect(infra.database_url)
    try:
        row = await connection.fetchrow(
            f"SELECT (SELECT count(*) FROM ({OUTBOX_EVENTS}) o) AS written, "
            f"(SELECT count(*) FROM ({OUTBOX_EVENTS}) o WHERE NOT EXISTS (SELECT 1 FROM "
            "audit.log_entries l WHERE l.ce_source = o.source AND l.ce_id = o.event_id)) "
            "AS missing, "
            "(SELECT count(*) FROM (SELECT 1 FROM audit.log_entries GROUP BY ce_source, ce_id "
            "HAVING count(*) > 1) d) AS twice, "
            "(SELECT coalesce(max(index) + 1, 0) FROM audit.log_entries) AS size, "
            "(SELECT coalesce(max(index) + 1, 0) FROM audit.log_entries WHERE ce_type <> $1) "
            "AS settled_size, "
            "(SELECT position FROM audit.findings_cursor) AS cursor, "
            "(SELECT count(*) FROM audit.findings) AS findings",
            LogCheckpoint.ce_type,
        )
    finally:
        await connection.close()
    return LogState(**dict(row))


async def metric(audit: httpx.AsyncClient, name: str) -> float:
    text = (await audit.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no metric {name}")


async def signed_checkpoint_covering(stack: Stack, size: int) -> Checkpoint:
    response = await eventually(
        lambda: stack.clients["audit"].get("/v1/log/checkpoint"),
        lambda r: (
            r.status_code == 200
            and open_checkpoint(r.text, stack.log_signer.verifier)[0].size >= size
        ),
        timeout=30,
    )
    return open_checkpoint(response.text, stack.log_signer.verifier)[0]


async def assert_log_complete_and_verifiable(stack: Stack) -> Checkpoint:
    """Every event any service wrote is a leaf, once; a signed checkpoint covers them, the
    service re-derives the same tree, and so does the offline verifier."""
    state = await eventually(
        lambda: log_state(stack.infra),
        lambda state: state.written > 0 and state.missing == 0,
        timeout=30,
    )
    assert state.twice == 0, state
    checkpoint = await signed_checkpoint_covering(stack, state.settled_size)
    verified = (await stack.clients["audit"].get("/v1/log/verify")).json()
    assert verified["checkpoint_matches"] is True, verified
    assert verified["first_broken_index"] is None, verified
    ok, message = await verify_log(
        Source(database_url=stack.infra.database_url), checkpoint, stack.log_signer.verifier
    )
    assert ok, message
    return checkpoint


async def test_a_findings_defect_keeps_no_event_out_and_findings_catch_up_once_fixed(
    stack: Stack,
) -> None:
    audit = stack.clients["audit"]
    now = datetime.now(UTC)
    # R12: discovered three hours before it was reported, a finding once the code works. In
    # progress, so the bureau is alerted and notification's events reach the log too.
    incident_id = await report(
        stack.clients,
        category="OTHER",
        occurred_at=(now - timedelta(hours=4)).isoformat(),
        discovered_at=(now - timedelta(hours=3)).isoformat(),
    )
    await eventually(
        lambda: audit.get(f"/v1/incidents/{incident_id}/timeline"),
        lambda response: count_of("notification.delivered", response) >= 1,
        timeout=60,
    )

    # The evidence: complete, once each, under a signed checkpoint that verifies.
    before = await assert_log_complete_and_verifiable(stack)

    # The judgement: stopped at the incident's first leaf, and saying so.
    ready = await eventually(
        lambda: audit.get("/readyz"),
        lambda r: r.json()["checks"]["findings"].startswith("stopped at leaf"),
    )
    assert ready.status_code == 200, ready.text  # the log and its proofs are served as ever
    assert UUID(incident_id) in stack.findings.refused
    state = await log_state(stack.infra)
    first_leaf = (await audit.get(f"/v1/incidents/{incident_id}/timeline")).json()["entries"][0]
    assert state.cursor <= first_leaf["index"] < state.size
    assert state.findings == 0
    listed = await audit.get("/v1/findings", params={"incident_id": incident_id})
    assert listed.status_code == 200 and listed.json()["findings"] == []
    assert DEFECT in ready.json()["checks"]["findings"]
    assert await metric(audit, "emergency_audit_findings_lag_leaves") >= state.size - state.cursor
    assert await metric(audit, "emergency_audit_findings_review_failures_total") >= 1

    # The defect is removed: the follower catches up by itself.
    stack.findings.mend()
    found = await eventually(
        lambda: audit.get("/v1/findings", params={"incident_id": incident_id}),
        lambda r: "R12" in {finding["rule_id"] for finding in r.json()["findings"]},
        timeout=30,
    )
    await eventually(lambda: audit.get("/readyz"), lambda r: r.json()["checks"]["findings"] == "ok")
    # Its own findings and checkpoints come back as leaves too; once those settle, no lag.
    await eventually(
        lambda: metric(audit, "emergency_audit_findings_lag_leaves"), lambda lag: lag == 0
    )
    assert (await log_state(stack.infra)).cursor > state.cursor

    # The findings read the personal fields they name opened, and every other one sealed.
    seen = {
        (event.type, key, is_sealed(value))
        for event in stack.findings.judged[UUID(incident_id)]
        for key, value in personal_values(event.data)
    }
    assert all(
        sealed == (key not in PERSONAL_READ.get(ce_type, ())) for ce_type, key, sealed in seen
    ), seen
    assert {
        ("incident.reported", "location", False),
        ("incident.reported", "phone", True),
        ("obligation.created", "subject_names", False),
        ("obligation.created", "location", True),
    } <= seen

    # Each finding once: in the table, and as one audit.finding leaf published with it.
    after = await assert_log_complete_and_verifiable(stack)
    assert after.size > before.size
    ids = [finding["finding_id"] for finding in found.json()["findings"]]
    assert len(ids) == len(set(ids))
    connection = await asyncpg.connect(stack.infra.database_url)
    try:
        published = await connection.fetch(
            "SELECT leaf FROM audit.log_entries WHERE ce_type = 'audit.finding' AND subject = $1",
            incident_id,
        )
    finally:
        await connection.close()
    logged = [LoggedEvent.from_leaf(0, bytes(row["leaf"])).data["finding_id"] for row in published]
    assert sorted(logged) == sorted(ids)
