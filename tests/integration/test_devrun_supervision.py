"""`make run` supervises its services (tools/devrun.py Supervisor): a service killed with
SIGKILL is restarted, said on the terminal and in its log; one that keeps dying is given up
loudly. The embedded broker killed is restarted on its port, empty, with its topics."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import topics
from shared.settings import Settings
from tests.integration.helpers import eventually
from tests.support import running_system
from tools.devrun import RestartPolicy, ServiceProcesses, Supervisor
from tools.localinfra import Infrastructure, LocalBroker


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


async def test_a_killed_broker_is_restarted_empty_on_its_port_with_its_topics(
    infra_settings: Settings, work_dir: Path
) -> None:
    said: list[str] = []
    broker = LocalBroker(work_dir / "supervised-broker" / "tansu.log", topics=infra_settings)
    await broker.start()
    nothing_else = ServiceProcesses({}, {}, work_dir / "supervised-broker" / "logs")
    supervisor = Supervisor(
        nothing_else, RestartPolicy(first_pause=0.2), said.append, broker=broker
    )
    supervising = asyncio.create_task(supervisor.run())
    try:
        assert broker.process is not None
        killed, forgotten = broker.process.pid, broker.cluster_id
        os.kill(killed, signal.SIGKILL)
        await eventually(lines_said(said), lambda lines: len(lines) == 2)
        assert broker.process.pid != killed and broker.cluster_id != forgotten
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        try:
            described = await admin.describe_topics([topics.INCIDENTS])
        finally:
            await admin.close()
        # Made again as configured, not by the first client to ask (Tansu's default of 4).
        assert len(described[0]["partitions"]) == infra_settings.kafka_topic_partitions
    finally:
        supervising.cancel()
        await broker.stop()
    assert said[0].startswith(
        f"broker killed by SIGKILL; restarting it empty on port {broker.port}"
    )
    assert said[1].startswith("broker is running again (pid ")
    assert "[make run]" in broker.log_path.read_text("utf-8")
