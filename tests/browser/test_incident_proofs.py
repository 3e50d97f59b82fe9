"""The incident page of a running console, in Chromium: its audit timeline is verified in the
browser against the log's signed checkpoint (merkle.js), with the key the console fetched from
audit."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx

from shared.settings import CONSOLE
from tests.browser.pages import ConsoleSystem
from tests.integration.helpers import violence_report
from tests.support import PATIENCE_SECONDS

if TYPE_CHECKING:
    from playwright.async_api import Browser


async def covered_by_a_checkpoint(audit: httpx.AsyncClient, incident_id: str) -> int:
    """How many of the incident's leaves a signed checkpoint covers, once it covers them all."""
    async with asyncio.timeout(PATIENCE_SECONDS):
        while True:
            response = await audit.get(f"/v1/incidents/{incident_id}/proofs")
            if response.status_code == 200:
                entries = response.json()["entries"]
                if entries and all(entry["covered"] for entry in entries):
                    return len(entries)
            await asyncio.sleep(0.2)


async def test_the_incident_pages_timeline_is_verified_in_the_browser(
    browser: Browser, console_system: ConsoleSystem
) -> None:
    clients = console_system.clients
    reported = await clients["intake"].post("/v1/incidents", json=violence_report())
    assert reported.status_code == 201, reported.text
    incident_id = reported.json()["id"]
    covered = await covered_by_a_checkpoint(clients["audit"], incident_id)

    context = await browser.new_context()
    try:
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        target = f"/incidents/{incident_id}"
        await page.goto(f"{console_system.processes.url(CONSOLE)}/login?next={target}")
        await page.select_option("select#party", "BLO")
        await page.click("button[type=submit]")
        await page.wait_for_url(f"**{target}")
        await page.wait_for_function(
            "document.querySelector('section.timeline').dataset.proofChecked"
        )
        cells: list[list[Any]] = await page.eval_on_selector_all(
            "tr.entry .proof-result",
            "cells => cells.map(c => [c.className, c.textContent.trim(), c.title])",
        )
        summary = await page.text_content("#proof-summary") or ""
        log_key = await page.get_attribute("section.timeline", "data-log-key")
    finally:
        await context.close()
    assert not errors, errors
    assert log_key, "the page carries the log's verifier key"
    verified = [cell for cell in cells if "verified" in cell[0]]
    assert len(verified) >= covered, (cells, summary)
    assert all(text == "已验证" for _, text, _ in verified)
    assert not [cell for cell in cells if "failed" in cell[0]], (cells, summary)
    assert "签名有效" in summary
