"""Notification as a real process on its own PostgreSQL and broker, its parties reached through
loopback gateways; obligations are produced straight to `escalations.v1`, records of the audit
to `audit.v1`.

ACK is 1.5 s and retries back off from 0.2 s, so the walk down a contact list takes seconds.
Each party of the directory plays one scenario (`SCENARIOS`); parties not named there keep
the local file. The breaker threshold is high because every HTTP contact here shares one host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notification.handlers import NotificationHandlers
from services.notification.models import messaging
from services.notification.templates import default_texts
from shared.db import create_engine, migrate
from shared.domain.directory import Directory
from shared.events import CloudEvent, decode, topic_of, topics
from shared.settings import Settings
from tests.notification.loopback import Gateway, Inbox, loopback_gateway, smtp_server
from tests.support import (
    PATIENCE_SECONDS,
    clients_for,
    directory_with_contacts,
    running_system,
    scratch_database,
)
from tools.devrun import ServiceProcesses
from tools.localinfra import Infrastructure

ACK_SECRET = "ack-secret-for-tests"
WEBHOOK_SECRET = "webhook-secret-for-tests"
DINGTALK_SECRET = "SEC-dingtalk-secret-for-tests"
ACK_SECONDS = 1.5


def webhook(gateway: Gateway, path: str) -> dict[str, str]:
    return {"channel": "webhook", "address": gateway.url(path)}


def scenarios(gateway: Gateway) -> dict[str, dict[str, list[dict[str, str]]]]:
    """Per party: its contacts and, for a few, its drill contacts."""
    return {
        # delivery semantics
        "PPS:150626100": {"contacts": [webhook(gateway, "/flaky")]},
        "TCG:150626100": {
            "contacts": [webhook(gateway, "/refuses"), webhook(gateway, "/fallback")]
        },
        "SFS:150626100": {"contacts": [webhook(gateway, "/hang")]},
        "PPS:150626101": {"contacts": [{"channel": "sms", "address": "13900000001"}]},
        "SFS:150626103": {"contacts": [webhook(gateway, "/plain")]},
        # every channel, end to end
        "TCG:150626101": {"contacts": [{"channel": "email", "address": "duty@tcg.example"}]},
        "SFS:150626101": {
            "contacts": [
                {
                    "channel": "dingtalk",
                    "address": gateway.url("/robot/send?access_token=tok-sfs"),
                }
            ]
        },
        "PPS:150626102": {
            "contacts": [
                {"channel": "wecom", "address": gateway.url("/cgi-bin/webhook/send?key=k-pps")}
            ]
        },
        "TCG:150626102": {"contacts": [{"channel": "aliyun_sms", "address": "13900000002"}]},
        "SFS:150626102": {"contacts": [{"channel": "voice", "address": "13900000003"}]},
        # acknowledgement
        "BLO": {"contacts": [webhook(gateway, "/walk-a"), webhook(gateway, "/walk-b")]},
        "BJO": {"contacts": [webhook(gateway, "/ack-a"), webhook(gateway, "/ack-b")]},
        # withdrawal: a walk stopped before its end, and a send in flight when it stops
        "PPS:150626104": {
            "contacts": [webhook(gateway, "/withdraw-a"), webhook(gateway, "/withdraw-b")]
        },
        "TCG:150626104": {
            "contacts": [webhook(gateway, "/withdraw-slow"), webhook(gateway, "/withdraw-next")]
        },
        # drills (R16)
        "PPS:150626103": {"contacts": [webhook(gateway, "/police-real")]},
        "TCG:150626103": {
            "contacts": [webhook(gateway, "/tcg-real")],
            "drill_contacts": [webhook(gateway, "/tcg-drill")],
        },
        # a crash mid-retry
        "PRO": {"contacts": [webhook(gateway, "/crash")]},
        # a refused action told to who recorded it
        "SFS:150626200": {"contacts": [webhook(gateway, "/notice")]},
        # a commendation or discipline told to the CEO (R15); an update to a court (R19)
        "CEO": {"contacts": [webhook(gateway, "/ceo")]},
        "DEC:乌审旗人民法院": {"contacts": [webhook(gateway, "/court")]},
    }


@pytest.fixture(scope="session")
async def gateway() -> AsyncIterator[Gateway]:
    async with loopback_gateway() as started:
        yield started


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as started:
        yield started


def write_directory(path: Path, gateway: Gateway) -> Path:
    plan = scenarios(gateway)
    directory_with_contacts(
        path, lambda party: plan.get(party["code"], {}).get("contacts", [{"channel": "file"}])
    )
    # Drill contacts are the one thing `directory_with_contacts` leaves as they are.
    data = yaml.safe_load(path.read_text("utf-8"))
    for party in data["parties"]:
        party.pop("drill_contacts", None)
        if drill := plan.get(party["code"], {}).get("drill_contacts"):
            party["drill_contacts"] = drill
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return path


@dataclass
class NotificationSystem:
    infra: Infrastructure
    services: ServiceProcesses
    gateway: Gateway
    inbox: Inbox
    work_dir: Path
    api: httpx.AsyncClient
    producer: AIOKafkaProducer
    events: list[CloudEvent] = field(default_factory=list)

    async def publish(self, event: CloudEvent) -> None:
        """Produce `event` to the topic of its type (escalations.v1, audit.v1)."""
        await self.producer.send_and_wait(
            topic_of(event.data), value=event.value(), key=event.key, headers=event.headers()
        )

    def events_of(self, incident_id: str | UUID, ce_type: str | None = None) -> list[CloudEvent]:
        return [
            event
            for event in self.events
            if event.subject == str(incident_id) and (ce_type is None or event.type == ce_type)
        ]

    async def wait_for_event(
        self,
        incident_id: str | UUID,
        ce_type: str,
        count: int = 1,
        timeout: float = PATIENCE_SECONDS,
    ) -> list[CloudEvent]:
        try:
            async with asyncio.timeout(timeout):
                while len(self.events_of(incident_id, ce_type)) < count:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            seen = [event.type for event in self.events_of(incident_id)]
            raise AssertionError(f"no {count} × {ce_type} in {timeout}s; saw {seen}") from None
        return self.events_of(incident_id, ce_type)

    async def notifications(self, incident_id: str | UUID) -> list[dict[str, Any]]:
        response = await self.api.get("/v1/notifications", params={"incident_id": str(incident_id)})
        assert response.status_code == 200, response.text
        return response.json()["items"]

    async def wait_for_notification(
        self,
        incident_id: str | UUID,
        accept: Callable[[dict[str, Any]], bool],
        timeout: float = PATIENCE_SECONDS,
    ) -> dict[str, Any]:
        last: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    last = await self.notifications(incident_id)
                    if last and accept(last[0]):
                        return last[0]
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"notification not as expected in {timeout}s: {last}") from None


async def collect(bootstrap: str, into: list[CloudEvent]) -> None:
    consumer = AIOKafkaConsumer(
        topics.NOTIFICATIONS,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while True:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                into.extend(decode(r.topic, r.headers, r.value) for r in records)
    finally:
        await consumer.stop()


@pytest.fixture(scope="session")
async def notification_system(
    tmp_path_factory: pytest.TempPathFactory, gateway: Gateway, smtp: tuple[Inbox, int]
) -> AsyncIterator[NotificationSystem]:
    work_dir = tmp_path_factory.mktemp("notification")
    inbox, smtp_port = smtp
    environment = {
        "DIRECTORY_FILE": str(write_directory(work_dir / "directory.yaml", gateway)),
        "NOTIFICATION_ACK_SECONDS": str(ACK_SECONDS),
        "NOTIFICATION_ACK_SECRET": ACK_SECRET,
        "NOTIFICATION_PUBLIC_BASE_URL": "http://notification.test",
        "NOTIFICATION_RETRY_BASE_SECONDS": "0.2",
        "NOTIFICATION_RETRY_MAX_SECONDS": "1.0",
        "NOTIFICATION_MAX_ATTEMPTS": "5",
        "NOTIFICATION_SEND_TIMEOUT_SECONDS": "1.0",
        "NOTIFICATION_LEASE_SECONDS": "3.0",
        "NOTIFICATION_BREAKER_FAILURES": "1000",
        "NOTIFICATION_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "NOTIFICATION_CONTACT_SECRETS": json.dumps(
            {gateway.url("/robot/send?access_token=tok-sfs"): DINGTALK_SECRET}
        ),
        "NOTIFICATION_SMS_URL": gateway.url("/sms"),
        "NOTIFICATION_VOICE_URL": gateway.url("/voice"),
        "NOTIFICATION_ALIYUN_SMS_ENDPOINT": gateway.url("/aliyun/"),
        "NOTIFICATION_ALIYUN_ACCESS_KEY_ID": "testId",
        "NOTIFICATION_ALIYUN_ACCESS_KEY_SECRET": "testSecret",
        "NOTIFICATION_ALIYUN_SMS_SIGN_NAME": "乌审旗司法局",
        "NOTIFICATION_ALIYUN_SMS_TEMPLATE_CODE": "SMS_000001",
        "NOTIFICATION_SMTP_PORT": str(smtp_port),
    }
    async with running_system(work_dir, environment, services=["notification"]) as (
        infra,
        services,
    ):
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers, acks="all")
        await producer.start()
        api = clients_for(services, work_dir)["notification"]
        system = NotificationSystem(infra, services, gateway, inbox, work_dir, api, producer)
        collector = asyncio.create_task(collect(infra.kafka_bootstrap_servers, system.events))
        try:
            yield system
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
            await api.aclose()
            await producer.stop()


@pytest.fixture
async def private_settings(
    notification_system: NotificationSystem, tmp_path: Path
) -> AsyncIterator[Settings]:
    """A database of its own, migrated, where no running service claims anything."""
    async with scratch_database(
        notification_system.infra.database_url,
        alerts_file=tmp_path / "alerts.jsonl",
        local_data_dir=tmp_path,
        notification_send_timeout_seconds=2.0,
        notification_lease_seconds=3.0,
    ) as settings:
        await migrate(settings, "notification")
        yield settings


@pytest.fixture
async def engine(private_settings: Settings) -> AsyncIterator[AsyncEngine]:
    created = create_engine(private_settings, pool_size=4)
    yield created
    await created.dispose()


def notification_handlers(settings: Settings) -> NotificationHandlers:
    """Notification's consumers, without a dispatcher in the process: alerts are stored NEW."""
    return NotificationHandlers(
        Directory.load(settings.directory_file), messaging.outbox, default_texts()
    )
