"""A system of its own whose policy counts deadlines in seconds, so time can pass in a test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import clients_for, running_system
from tools.devrun import ServiceProcesses
from tools.localinfra import Infrastructure

SECONDS_POLICY = {
    "version": "seconds-for-tests",
    "deadlines": {
        "IMMEDIATE": {"duration": "PT2S", "plan_word": "立即"},
        "PROMPT": {"duration": "PT3S", "plan_word": "及时"},
        "WRITTEN": {"duration": "PT3S", "plan_word": "书面报告"},
        "SEARCH_WINDOW": {"duration": "PT2S", "plan_word": "查找未果"},
        "FOLLOW_UP": {"duration": "PT3S", "plan_word": "续报"},
        "INVESTIGATION": {"duration": "PT3S", "plan_word": "调查报告"},
    },
    # R11 and R9's quiet spell, in seconds too; quiet long enough for the tests of R9's
    # recurrence to see it recur first.
    "omitted_after": "PT4S",
    "quiet_after": "PT12S",
}


@pytest.fixture(scope="package")
async def fast_system(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Infrastructure, ServiceProcesses]]:
    work_dir = Path(tmp_path_factory.mktemp("fast-deadlines"))
    overrides = work_dir / "policy-overrides.yaml"
    overrides.write_text(yaml.safe_dump(SECONDS_POLICY, allow_unicode=True), encoding="utf-8")
    async with running_system(
        work_dir,
        {
            "POLICY_OVERRIDES_FILE": str(overrides),
            "DEADLINE_POLL_INTERVAL_SECONDS": "0.2",
        },
    ) as (infra, processes):
        yield infra, processes, work_dir


@pytest.fixture(scope="package")
async def fast(fast_system) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    _, processes, work_dir = fast_system
    opened = clients_for(processes, work_dir)
    yield opened
    for client in opened.values():
        await client.aclose()
