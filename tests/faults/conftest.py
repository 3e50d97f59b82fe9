"""A system of its own for the fault drills: fresh PostgreSQL and broker, the four services, and
gateways standing in for every party's contacts (see `gateways`).

Time passes quickly: an alert waits 1 s for an acknowledgement before the next contact is
tried, a failed send is retried within a second, and a gateway that stays down costs a contact
three attempts. The send timeout (8 s) is longer than the slow gateway takes (5 s), so a slow
answer is a delivery, not a failure to retry.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from services.audit.note import Signer, Verifier
from services.escalation.rules import Policy
from shared.domain.directory import Directory
from shared.settings import Settings
from tests.faults.gateways import Gateway
from tests.faults.poison import PoisonRecord
from tests.support import clients_for, directory_with_contacts, running_system
from tools.contracts import services as service_consumers
from tools.devrun import ServiceProcesses
from tools.localinfra import Infrastructure

LOG_ORIGIN = "sqjz.wushen.example/audit-faults"


@dataclass
class FaultBench:
    """Everything a fault drill touches and every check reads."""

    infra: Infrastructure
    processes: ServiceProcesses
    clients: dict[str, httpx.AsyncClient]
    primary: Gateway
    duty_desk: Gateway
    directory: Directory
    policy: Policy
    log_key: Verifier
    # topic → the consumer groups that read it (each dead-letters a poison record on its own)
    consumers_of: dict[str, list[str]]
    # group → the types it reads past by their header, whatever the record holds
    ignored_by: dict[str, frozenset[str]]
    poison: list[PoisonRecord] = field(default_factory=list)

    @property
    def party_names(self) -> dict[str, str]:
        return {party.code: party.name for party in self.directory.parties}


def consumer_groups_by_topic() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for _, consumers in service_consumers().values():
        for consumer in consumers:
            for topic in consumer.topics:
                groups[topic].append(consumer.group)
    return dict(groups)


def ignored_types_by_group() -> dict[str, frozenset[str]]:
    return {
        consumer.group: consumer.handlers.ignored
        for _, consumers in service_consumers().values()
        for consumer in consumers
    }


# The policy's ACK, which every alert carries (`ack_seconds`): a second, so unacknowledged
# alerts walk to the next contact, and the whole list, within the drill.
POLICY_OVERRIDES = {"deadlines": {"ACK": {"duration": "PT1S", "plan_word": "确认收到"}}}


def system_environment(directory: Path, policy_overrides: Path, log_seed: bytes) -> dict[str, str]:
    return {
        "DIRECTORY_FILE": str(directory),
        "POLICY_OVERRIDES_FILE": str(policy_overrides),
        # The load comes from one caller; the edge's per-caller limit is not under test here.
        "RATE_LIMIT_PER_SECOND": "100000",
        "RATE_LIMIT_BURST": "100000",
        # Only for an alert that carries no ACK of its own.
        "NOTIFICATION_ACK_SECONDS": "1",
        # The dispatcher notices acknowledgement windows running out when it polls.
        "OUTBOX_POLL_INTERVAL_SECONDS": "0.2",
        # A killed service's partitions move on (to its restarted self) within seconds.
        "KAFKA_SESSION_TIMEOUT_MS": "3000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "NOTIFICATION_MAX_ATTEMPTS": "3",
        "NOTIFICATION_RETRY_BASE_SECONDS": "0.2",
        "NOTIFICATION_RETRY_MAX_SECONDS": "2",
        "NOTIFICATION_SEND_TIMEOUT_SECONDS": "8",
        "NOTIFICATION_LEASE_SECONDS": "10",
        "NOTIFICATION_BREAKER_COOLDOWN_SECONDS": "1",
        # A hundred slow answers in flight at once (the HTTP client's pool), so a gateway
        # taking 5 s holds up no more than that.
        "NOTIFICATION_CHANNEL_LIMITS": json.dumps(
            {"webhook": {"concurrency": 100, "rate_per_second": 1000, "burst": 200}}
        ),
        "AUDIT_LOG_ORIGIN": LOG_ORIGIN,
        "AUDIT_SIGNING_KEY_SEED": base64.b64encode(log_seed).decode(),
        "AUDIT_CHECKPOINT_INTERVAL_SECONDS": "0.5",
        "SHUTDOWN_GRACE_SECONDS": "5",
    }


@pytest.fixture(scope="package")
async def fault_bench(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultBench]:
    work_dir = Path(tmp_path_factory.mktemp("faults"))
    primary, duty_desk = Gateway("primary"), Gateway("duty desk")
    await primary.start()
    await duty_desk.start()
    directory_file = directory_with_contacts(
        work_dir / "directory.yaml",
        lambda _party: [
            {"channel": "webhook", "address": primary.url, "label": "primary gateway"},
            {"channel": "webhook", "address": duty_desk.url, "label": "duty desk"},
        ],
    )
    overrides = work_dir / "policy-overrides.yaml"
    overrides.write_text(yaml.safe_dump(POLICY_OVERRIDES, allow_unicode=True), encoding="utf-8")
    log_seed = secrets.token_bytes(32)
    environment = system_environment(directory_file, overrides, log_seed)
    try:
        async with running_system(work_dir, environment) as (
            infra,
            processes,
        ):
            duty_desk.acknowledge_via = processes.url("notification")
            clients = clients_for(processes, work_dir)
            try:
                yield FaultBench(
                    infra=infra,
                    processes=processes,
                    clients=clients,
                    primary=primary,
                    duty_desk=duty_desk,
                    directory=Directory.load(directory_file),
                    policy=Policy.load(Settings().policy_file, overrides),
                    log_key=Signer.from_seed(LOG_ORIGIN, log_seed).verifier,
                    consumers_of=consumer_groups_by_topic(),
                    ignored_by=ignored_types_by_group(),
                )
            finally:
                for client in clients.values():
                    await client.aclose()
    finally:
        await primary.close()
        await duty_desk.close()
