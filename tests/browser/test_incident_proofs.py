"""The incident page of a running console, in Chromium: its audit timeline is verified in the
browser against the log's signed checkpoint (merkle.js), with the key the console fetched from
audit. The four services and the console run as processes on a fresh PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.settings import CONSOLE, SERVICE_NAMES
from tests.browser.test_merkle_js import CHROMIUM, CHROMIUM_ARGS, browser_missing
from tests.integration.helpers import violence_report
from tests.support import PATIENCE_SECONDS, clients_for, running_system


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


async def test_the_incident_pages_timeline_is_verified_in_the_browser(tmp_path: Path) -> None:
    missing = browser_missing()
    if missing:
        if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
            pytest.fail(f"REQUIRE_BROWSER_TESTS=1 but {missing}")
        pytest.skip(missing)
    from playwright.async_api import async_playwright

    async with running_system(tmp_path, {}, services=(*SERVICE_NAMES, CONSOLE)) as (_, processes):
        clients = clients_for(processes, tmp_path)
        try:
            reported = await clients["intake"].post("/v1/incidents", json=violence_report())
            assert reported.status_code == 201, reported.text
            incident_id = reported.json()["id"]
            covered = await covered_by_a_checkpoint(clients["audit"], incident_id)
        finally:
            for client in clients.values():
                await client.aclose()

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                target = f"/incidents/{incident_id}"
                await page.goto(f"{processes.url(CONSOLE)}/login?next={target}")
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
                await browser.close()
    assert not errors, errors
    assert log_key, "the page carries the log's verifier key"
    verified = [cell for cell in cells if "verified" in cell[0]]
    assert len(verified) >= covered, (cells, summary)
    assert all(text == "已验证" for _, text, _ in verified)
    assert not [cell for cell in cells if "failed" in cell[0]], (cells, summary)
    assert "签名有效" in summary
