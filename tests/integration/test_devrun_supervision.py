"""`make run` supervises its services (shared/devrun.py Supervisor): a service killed with
SIGKILL is restarted, said on the terminal and in its log; one that keeps dying is given up
loudly."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx

from shared.devrun import RestartPolicy, ServiceProcesses, Supervisor
from shared.localinfra import Infrastructure
from tests.integration.helpers import eventually
from tests.support import running_system


def kill(processes: ServiceProcesses, service: str) -> int:
    pid = processes.processes[service].pid
    os.kill(pid, signal.SIGKILL)
    return pid


def lines_said(said: list[str]):
    async def probe() -> list[str]:
        return list(said)

    return probe


async def test_a_killed_service_is_restarted_and_said_so(
    infra: Infrastructure, work_dir: Path
) -> None:
    said: list[str] = []
    async with running_system(work_dir / "supervised", {}, ["intake"], infra) as (_, processes):
        supervisor = Supervisor(processes, RestartPolicy(first_pause=0.2), said.append)
        supervising = asyncio.create_task(supervisor.run())
        try:
            killed = kill(processes, "intake")

            async def ready_again() -> int | None:
                process = processes.processes["intake"]
                async with httpx.AsyncClient() as client:
                    try:
                        response = await client.get(f"{processes.url('intake')}/readyz")
                    except httpx.HTTPError:
                        return None
                return process.pid if response.status_code == 200 else None

            await eventually(ready_again, lambda pid: pid is not None and pid != killed)
            await eventually(lines_said(said), lambda lines: len(lines) == 2)
        finally:
            supervising.cancel()
    assert said[0].startswith("intake killed by SIGKILL; restarting in 0.2 s (crash 1")
    assert said[1].startswith("intake is running again (pid ")
    own_log = (work_dir / "supervised" / "logs" / "intake.log").read_text("utf-8")
    assert "[make run]" in own_log and "intake killed by SIGKILL" in own_log


async def test_a_service_that_keeps_dying_is_given_up_loudly(
    infra: Infrastructure, work_dir: Path
) -> None:
    said: list[str] = []
    give_up_at_two = RestartPolicy(first_pause=0.2, crashes_allowed=2, within=600)
    async with running_system(work_dir / "crashing", {}, ["intake"], infra) as (_, processes):
        supervisor = Supervisor(processes, give_up_at_two, said.append)
        supervising = asyncio.create_task(supervisor.run())
        kill(processes, "intake")
        await eventually(lines_said(said), lambda lines: any("again" in s for s in lines))
        kill(processes, "intake")
        async with asyncio.timeout(30):
            given_up = await supervising
    assert given_up == "intake"
    assert "GIVING UP, the system is not running" in said[-1]
    assert "2 crashes within 600 s" in said[-1]
