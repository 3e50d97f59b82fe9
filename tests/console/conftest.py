"""The system with its duty console, tracing as `make run` does: every service sends its
spans to the console; the webhook sink of the end-to-end tests stands in for the parties. It
runs on a PostgreSQL and broker of its own: beside the suite's system on the same broker, the
two would share consumer groups and each read half of every topic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shared.settings import CONSOLE, SERVICE_NAMES
from tests.support import PATIENCE_SECONDS, clients_for, running_system
from tools.devrun import ServiceProcesses


@pytest.fixture(scope="package")
async def system(
    tmp_path_factory: pytest.TempPathFactory, webhook_directory: Path
) -> AsyncIterator[ServiceProcesses]:
    async with running_system(
        tmp_path_factory.mktemp("traced-console"),
        {"DIRECTORY_FILE": str(webhook_directory)},
        services=(*SERVICE_NAMES, CONSOLE),
        traces_to_console=True,
    ) as (_, processes):
        yield processes


@pytest.fixture(scope="package")
async def clients(system: ServiceProcesses) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    opened = clients_for(system, Path(system.log_dir).parent)
    yield opened
    for client in opened.values():
        await client.aclose()


@pytest.fixture
async def browser(system: ServiceProcesses) -> AsyncIterator[httpx.AsyncClient]:
    """A browser at the console: it keeps the session cookie and follows no redirect."""
    async with httpx.AsyncClient(base_url=system.url(CONSOLE), timeout=PATIENCE_SECONDS) as client:
        yield client
