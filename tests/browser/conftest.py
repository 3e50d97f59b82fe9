"""The duty console in a real browser: Debian's Chromium driven by Playwright, against the four
services and the console as processes (the suite's running system), with every party
reached through a webhook sink (so a test holds the alerts, and their links, each party got).

Without Chromium the tests are skipped and say why; with REQUIRE_BROWSER_TESTS=1 (as .ci/run
sets) they fail instead, so CI never passes without them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.browser.pages import CHROMIUM_ARGS, PATIENCE_MS, Browsing, ConsoleSystem
from tests.support import WebhookSink
from tools.devrun import ServiceProcesses

if TYPE_CHECKING:
    from playwright.async_api import Browser


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
def console_system(
    chromium: str,
    system: ServiceProcesses,
    webhook_sink: WebhookSink,
    clients: dict[str, httpx.AsyncClient],
) -> ConsoleSystem:
    """The suite's running system (tests/conftest.py): the four services and the console, with
    every party reached through the webhook sink."""
    return ConsoleSystem(system, webhook_sink, clients)


@pytest.fixture
async def browsing(browser: Browser, console_system: ConsoleSystem) -> AsyncIterator[Browsing]:
    opened = Browsing(browser, console_system)
    yield opened
    await opened.close()
