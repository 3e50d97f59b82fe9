"""The duty console in a real browser: Debian's Chromium driven by Playwright, against the four
services and the console as processes on a PostgreSQL and broker of their own, with every party
reached through a webhook sink (so a test holds the alerts, and their links, each party got).

Without Chromium the tests are skipped and say why; with REQUIRE_BROWSER_TESTS=1 (as .ci/run
sets) they fail instead, so CI never passes without them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shared.settings import CONSOLE, SERVICE_NAMES
from tests.browser.pages import PATIENCE_MS, Browsing, ConsoleSystem
from tests.support import clients_for, directory_with_contacts, running_system, webhook_sink

if TYPE_CHECKING:
    from playwright.async_api import Browser

# Playwright's own browser download is not used: the system's Chromium is. Without the
# background-networking flags Chromium keeps calling Google's services, which a closed network
# refuses; there is no sandbox for a root user in a container, and no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _why_no_browser() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[dev]')"
    if _chromium() is None:
        return (
            "Chromium is not installed (the Debian package chromium; `make test` installs it "
            "with apt-get when run as root), nor named by CHROMIUM"
        )
    return None


def _chromium() -> str | None:
    return shutil.which(os.environ.get("CHROMIUM", "chromium"))


@pytest.fixture(scope="package")
def chromium() -> str:
    """Where Chromium is; the browser tests are skipped without it, or fail when required."""
    missing = _why_no_browser()
    if missing is not None:
        if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
            pytest.fail(f"the browser tests must run (REQUIRE_BROWSER_TESTS=1), but {missing}")
        pytest.skip(f"browser tests not run: {missing}")
    path = _chromium()
    assert path is not None
    return path


@pytest.fixture(scope="package")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright, expect

    # Wait for what a page should show, as long as the suite waits for anything.
    expect.set_options(timeout=PATIENCE_MS)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(scope="package")
async def console_system(
    chromium: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ConsoleSystem]:
    """The four services and the console on their own PostgreSQL and broker."""
    work_dir = Path(tmp_path_factory.mktemp("console"))
    async with webhook_sink() as sink:
        directory = directory_with_contacts(
            work_dir / "directory.yaml",
            lambda _party: [{"channel": "webhook", "address": sink.url}],
        )
        async with running_system(
            work_dir,
            {"DIRECTORY_FILE": str(directory)},
            services=(*SERVICE_NAMES, CONSOLE),
        ) as (_, processes):
            clients = clients_for(processes, work_dir)
            yield ConsoleSystem(processes, sink, clients)
            for client in clients.values():
                await client.aclose()


@pytest.fixture
async def browsing(browser: Browser, console_system: ConsoleSystem) -> AsyncIterator[Browsing]:
    opened = Browsing(browser, console_system)
    yield opened
    await opened.close()
