"""The system with its duty console, tracing as `make run` does: every service sends its
spans to the console; the webhook sink of the end-to-end tests stands in for the parties."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shared.devrun import ServiceProcesses
from shared.localinfra import Infrastructure
from shared.settings import CONSOLE, SERVICE_NAMES
from tests.integration.conftest import clients, webhook_directory, webhook_sink
from tests.support import PATIENCE_SECONDS, running_system

__all__ = ["clients", "webhook_directory", "webhook_sink"]  # the end-to-end tests' fixtures


@pytest.fixture(scope="session")
async def system(
    infra: Infrastructure, work_dir: Path, webhook_directory: Path
) -> AsyncIterator[ServiceProcesses]:
    async with running_system(
        work_dir,
        {"DIRECTORY_FILE": str(webhook_directory)},
        services=(*SERVICE_NAMES, CONSOLE),
        infra=infra,
        traces_to_console=True,
    ) as (_, processes):
        yield processes


@pytest.fixture
async def browser(system: ServiceProcesses) -> AsyncIterator[httpx.AsyncClient]:
    """A browser at the console: it keeps the session cookie and follows no redirect."""
    async with httpx.AsyncClient(base_url=system.url(CONSOLE), timeout=PATIENCE_SECONDS) as client:
        yield client


async def log_in(browser: httpx.AsyncClient, party: str) -> None:
    """The local login, as the page's form posts it."""
    response = await browser.post(
        "/login/local",
        data={"party": party, "name": "值班员"},
        headers={"Origin": str(browser.base_url).rstrip("/")},
    )
    assert response.status_code == 303, response.text
    assert browser.cookies.get("sqjz_session")
