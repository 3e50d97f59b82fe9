"""Fixtures: the real PostgreSQL and Kafka-protocol broker, started by the project itself."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.localinfra import Infrastructure, infrastructure
from shared.settings import Settings


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
