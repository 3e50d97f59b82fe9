"""A system of its own for audit: all four services, deadlines of seconds, known keys."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from services.audit.note import COSIGNATURE_V1, Signer, Verifier
from tests.integration.helpers import count_of, eventually, violence_report
from tests.support import (
    PATIENCE_SECONDS,
    PartyAuth,
    clients_for,
    log_warnings,
    running_system,
    test_keys,
)
from tools.devrun import ServiceProcesses
from tools.localinfra import Infrastructure

ORIGIN = "sqjz.wushen.example/audit-test"
LOG_SEED = bytes(range(32))
WITNESS_SEED = bytes(range(100, 132))

# R4's notices fall due in 2 s and R1/R3's first response in 4 s; everything else waits long
# enough not to crowd the log of the scenario.
AUDIT_POLICY = {
    "version": "audit-seconds-for-tests",
    "deadlines": {
        "IMMEDIATE": {"duration": "PT4S", "plan_word": "立即"},
        "PROMPT": {"duration": "PT2S", "plan_word": "及时"},
        "WRITTEN": {"duration": "PT60S", "plan_word": "书面报告"},
        "SEARCH_WINDOW": {"duration": "PT60S", "plan_word": "查找未果"},
        "FOLLOW_UP": {"duration": "PT60S", "plan_word": "续报"},
        "INVESTIGATION": {"duration": "PT60S", "plan_word": "调查报告"},
    },
}


@dataclass(frozen=True)
class AuditSystem:
    infra: Infrastructure
    processes: ServiceProcesses
    log_signer: Signer
    witness: Signer
    work_dir: Path

    @property
    def log_key(self) -> Verifier:
        return self.log_signer.verifier


@pytest.fixture(scope="package")
async def audit_system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AuditSystem]:
    work_dir = Path(tmp_path_factory.mktemp("audit"))
    overrides = work_dir / "policy-overrides.yaml"
    overrides.write_text(yaml.safe_dump(AUDIT_POLICY, allow_unicode=True), encoding="utf-8")
    log_signer = Signer.from_seed(ORIGIN, LOG_SEED)
    witness = Signer.from_seed("witness.example/w1", WITNESS_SEED, COSIGNATURE_V1)
    async with running_system(
        work_dir,
        {
            "POLICY_OVERRIDES_FILE": str(overrides),
            "DEADLINE_POLL_INTERVAL_SECONDS": "0.2",
            "AUDIT_LOG_ORIGIN": ORIGIN,
            "AUDIT_SIGNING_KEY_SEED": base64.b64encode(LOG_SEED).decode(),
            "AUDIT_WITNESS_KEYS": witness.verifier.vkey,
            "AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0.5",
        },
    ) as (infra, processes):
        await warm_up(processes, work_dir)
        yield AuditSystem(infra, processes, log_signer, witness, work_dir)


async def warm_up(processes: ServiceProcesses, work_dir: Path) -> None:
    """One incident through every consumer, so that group joins do not delay the tests'."""
    async with httpx.AsyncClient(
        timeout=PATIENCE_SECONDS, auth=PartyAuth(test_keys(work_dir)[0])
    ) as client:
        created = await client.post(
            f"{processes.url('intake')}/v1/incidents", json=violence_report(category="OTHER")
        )
        incident_id = created.json()["id"]
        timeline = f"{processes.url('audit')}/v1/incidents/{incident_id}/timeline"
        try:
            await eventually(
                lambda: client.get(timeline),
                lambda response: count_of("notification.delivered", response) >= 1,
            )
        except AssertionError:
            reached = await client.get(timeline)
            types = (
                [entry["ce_type"] for entry in reached.json()["entries"]]
                if reached.status_code == 200
                else reached.text
            )
            pytest.fail(
                f"the warm-up incident {incident_id} did not reach the audit log as delivered;"
                f" its timeline holds {types}\n{log_warnings(processes.log_dir)}"
            )


@pytest.fixture(scope="package")
async def clients(audit_system: AuditSystem) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    opened = clients_for(audit_system.processes, audit_system.work_dir)
    yield opened
    for client in opened.values():
        await client.aclose()
