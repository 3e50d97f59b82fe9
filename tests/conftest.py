"""Fixtures: the real PostgreSQL and Kafka-protocol broker, started by the project itself."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shared.settings import CONSOLE, SERVICE_NAMES, Settings
from tests.support import WebhookSink, clients_for, directory_with_contacts, running_system
from tests.support import webhook_sink as start_webhook_sink
from tools.devrun import ServiceProcesses
from tools.localinfra import Infrastructure, infrastructure

pytest_plugins = ["tests.hangs"]


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("system")
    path.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data folder
    return path


@pytest.fixture(scope="session")
async def infra(work_dir: Path) -> AsyncIterator[Infrastructure]:
    async with infrastructure(Settings(), work_dir, fresh=True) as started:
        yield started


@pytest.fixture(scope="session")
def infra_settings(infra: Infrastructure, work_dir: Path) -> Settings:
    """Settings pointing at the test infrastructure, for code run inside the test process."""
    return Settings(
        database_url=infra.database_url,
        kafka_bootstrap_servers=infra.kafka_bootstrap_servers,
        alerts_file=work_dir / "alerts.jsonl",
        local_data_dir=work_dir,
        **(
            {"kafka_enable_idempotence": True} if os.environ.get("KAFKA_ENABLE_IDEMPOTENCE") else {}
        ),
    )


# --- the whole system: the four services and the console as processes, and a webhook sink
# standing in for the parties (their alerts and acknowledgement links arrive there) -----------


@pytest.fixture(scope="session")
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    async with start_webhook_sink() as sink:
        yield sink


@pytest.fixture(scope="session")
def webhook_directory(work_dir: Path, webhook_sink: WebhookSink) -> Path:
    """The real directory of 乌审旗 with every party reached through the sink."""
    return directory_with_contacts(
        work_dir / "directory.yaml",
        lambda _party: [{"channel": "webhook", "address": webhook_sink.url}],
    )


@pytest.fixture(scope="session")
async def system(
    infra: Infrastructure, work_dir: Path, webhook_directory: Path
) -> AsyncIterator[ServiceProcesses]:
    async with running_system(
        work_dir,
        {"DIRECTORY_FILE": str(webhook_directory)},
        services=(*SERVICE_NAMES, CONSOLE),
        infra=infra,
    ) as (_, services):
        yield services


@pytest.fixture(scope="session")
async def clients(
    system: ServiceProcesses, work_dir: Path
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    opened = clients_for(system, work_dir)
    yield opened
    for client in opened.values():
        await client.aclose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault drills first, before the suite's running system starts: they load the machine
    with systems of their own, and measure nothing of another idling beside them."""
    items.sort(key=lambda item: 0 if "faults" in item.path.parts else 1)
