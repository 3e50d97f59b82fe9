"""A steady stream of incident reports across every category and phase, while a fault happens.

Each report carries its own `Idempotency-Key` and is posted again, unchanged, until intake
answers 201, as a careful client would while intake restarts or its database is away: so every
report is accepted exactly once, and the run knows which incidents it made.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.domain.directory import Directory
from shared.domain.vocabulary import Category, Phase

# What happens to a report while the service or its database cannot answer.
RETRY_PAUSE_SECONDS = 0.3
GIVE_UP_AFTER_SECONDS = 90.0
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})

COMBINATIONS = list(itertools.product(Category, Phase))


def incident_body(number: int, run: str, directory: Directory) -> dict[str, Any]:
    """Report `number` of a run: categories and phases in turn, townships in turn, a quarter
    reported by the public-security platform (so the 司法所 is alerted too), every fifth
    missing the measures taken (R7 asks to complete it). Each names a subject of its own, so
    no report counts as signs seen again (R17) because of another run."""
    category, phase = COMBINATIONS[number % len(COMBINATIONS)]
    township = directory.townships[number % len(directory.townships)]
    now = datetime.now(UTC)
    reporter = (
        {"party": "PLATFORM", "name": "韩建军", "phone": "13904770105"}
        if number % 4 == 3
        else {"party": f"SFS:{township.code}", "name": "李明", "phone": "13900000000"}
    )
    body: dict[str, Any] = {
        "category": str(category),
        "phase": str(phase),
        "township": township.name,
        "subjects": [{"id": f"SQJZ-{run}-{number:04d}", "name": "王某某"}],
        "occurred_at": (now - timedelta(minutes=8)).isoformat(),
        "discovered_at": (now - timedelta(minutes=5)).isoformat(),
        "location": f"{township.name}中心街",
        "summary": f"故障演练负载第{number}号：社区矫正对象情况报告。",
        "measures_taken": "司法所工作人员已赶赴现场。",
        "persons_involved": "社区矫正对象1人。",
        "reporter": reporter,
    }
    if number % 5 == 4:
        del body["measures_taken"]
    return body


@dataclass
class LoadRun:
    """The incidents one run reported: idempotency key → incident id."""

    name: str
    accepted: dict[str, str] = field(default_factory=dict)
    posts: int = 0
    retried: int = 0

    @property
    def incident_ids(self) -> list[str]:
        return list(self.accepted.values())


async def post_until_accepted(
    intake: httpx.AsyncClient, body: dict[str, Any], key: str, run: LoadRun
) -> None:
    async with asyncio.timeout(GIVE_UP_AFTER_SECONDS):
        while True:
            run.posts += 1
            try:
                response = await intake.post(
                    "/v1/incidents", json=body, headers={"Idempotency-Key": key}
                )
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 201:
                run.accepted[key] = response.json()["id"]
                return
            if response is not None and response.status_code not in RETRYABLE_STATUS:
                raise AssertionError(f"report refused: {response.status_code} {response.text}")
            run.retried += 1
            await asyncio.sleep(RETRY_PAUSE_SECONDS)


async def report_during(
    name: str,
    intake: httpx.AsyncClient,
    directory: Directory,
    fault: Callable[[], Awaitable[None]],
    count: int,
    per_second: float,
    fault_after: float = 1 / 3,
) -> LoadRun:
    """Report `count` incidents at `per_second`; once `fault_after` of them are out, run
    `fault` (it injects the fault and, if it is one, repairs it) while reports go on."""
    run = LoadRun(name)
    tag = uuid.uuid4().hex[:8]
    posting: list[asyncio.Task[None]] = []

    async def feed() -> None:
        for number in range(count):
            key = f"{name}-{tag}-{number}"
            body = incident_body(number, tag, directory)
            posting.append(asyncio.create_task(post_until_accepted(intake, body, key, run)))
            if number + 1 == max(int(count * fault_after), 1):
                injecting.set()
            await asyncio.sleep(1 / per_second)

    injecting = asyncio.Event()
    feeding = asyncio.create_task(feed())
    try:
        await injecting.wait()
        await fault()
        await feeding
        await asyncio.gather(*posting)
    finally:
        for task in (feeding, *posting):
            task.cancel()
    assert len(run.accepted) == count
    assert len(set(run.accepted.values())) == count, "two reports became one incident"
    return run
