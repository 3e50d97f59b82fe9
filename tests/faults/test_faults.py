"""Each fault strikes during a run of incidents of every category and phase (60 a drill in
`make test`, 540 over the nine; `FAULT_INCIDENTS_PER_RUN=200` for a few hundred each); the
system must then have lost nothing and doubled nothing (`checks`).

The drills run in the order written, on one system: each starts from what the previous left,
so a fault that leaves damage behind also fails the drills after it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

import pytest

from shared.settings import SERVICE_NAMES
from tests.faults.checks import Verdict, verify_nothing_lost_nothing_doubled
from tests.faults.conftest import FaultBench
from tests.faults.gateways import Behaviour
from tests.faults.load import LoadRun, report_during
from tests.faults.poison import produce_poison

# Sized so the drills fit in `make test` on a small machine; a bigger drill:
# FAULT_INCIDENTS_PER_RUN=300 FAULT_REPORTS_PER_SECOND=30 pytest tests/faults
INCIDENTS_PER_RUN = int(os.environ.get("FAULT_INCIDENTS_PER_RUN", "60"))
REPORTS_PER_SECOND = float(os.environ.get("FAULT_REPORTS_PER_SECOND", "20"))
BROKER_STALL_SECONDS = 10.0
# As long as a restart of a loaded server takes, with its checkpoint and recovery.
POSTGRES_DOWN_SECONDS = 3.0


async def run_with(
    bench: FaultBench, name: str, fault: Callable[[], Awaitable[None]], fault_after: float = 1 / 3
) -> LoadRun:
    return await report_during(
        name,
        bench.clients["intake"],
        bench.directory,
        fault,
        INCIDENTS_PER_RUN,
        REPORTS_PER_SECOND,
        fault_after,
    )


def assert_whole(verdict: Verdict) -> None:
    assert verdict.incidents == INCIDENTS_PER_RUN
    assert verdict.alerts > 0 and verdict.obligations > verdict.alerts


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_a_service_killed_mid_run_and_restarted(
    fault_bench: FaultBench, service: str
) -> None:
    processes = fault_bench.processes

    async def kill_and_restart() -> None:
        processes.stop_one(service, signal.SIGKILL)
        await asyncio.sleep(0.5)
        processes.start_one(service)
        await processes.wait_ready(service)

    run = await run_with(fault_bench, f"kill-{service}", kill_and_restart)
    verdict = await verify_nothing_lost_nothing_doubled(
        # Killed between a gateway's answer and our record, notification sends that delivery
        # again: the same Idempotency-Key, which the gateway drops.
        fault_bench,
        run,
        repeats_allowed=service == "notification",
    )
    assert_whole(verdict)


async def test_the_broker_stalled_for_ten_seconds(fault_bench: FaultBench) -> None:
    broker = fault_bench.infra.broker
    assert broker is not None and broker.process is not None

    async def stall() -> None:
        broker.process.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(BROKER_STALL_SECONDS)
        finally:
            broker.process.send_signal(signal.SIGCONT)

    run = await run_with(fault_bench, "broker-stall", stall)
    assert_whole(await verify_nothing_lost_nothing_doubled(fault_bench, run))


async def test_postgres_restarted_mid_run(fault_bench: FaultBench) -> None:
    postgres = fault_bench.infra.postgres
    assert postgres is not None

    async def restart() -> None:
        await postgres.stop()
        await asyncio.sleep(POSTGRES_DOWN_SECONDS)
        await postgres.start()

    run = await run_with(fault_bench, "postgres-restart", restart)
    # A send whose record the vanished database did not take is sent again, under its key.
    verdict = await verify_nothing_lost_nothing_doubled(fault_bench, run, repeats_allowed=True)
    assert_whole(verdict)
    for service in SERVICE_NAMES:  # each reconnected by itself
        await fault_bench.processes.wait_ready(service)


async def test_a_gateway_answering_after_five_seconds(fault_bench: FaultBench) -> None:
    primary = fault_bench.primary

    async def slow_down() -> None:
        await primary.set_behaviour(Behaviour.SLOW)

    try:
        run = await run_with(fault_bench, "slow-gateway", slow_down)
        # On a busy machine the gateway may hold an alert past the send timeout: that send is
        # recorded as a timeout and sent again under its key, as it must be. A send again after
        # a recorded success, or while the first is in flight, fails the drill (`checks`).
        verdict = await verify_nothing_lost_nothing_doubled(fault_bench, run)
    finally:
        await primary.set_behaviour(Behaviour.PROMPT)
    assert_whole(verdict)


async def test_a_gateway_down_throughout(fault_bench: FaultBench) -> None:
    primary = fault_bench.primary
    await primary.set_behaviour(Behaviour.DOWN)
    try:
        run = await run_with(fault_bench, "down-gateway", _nothing_more)
        verdict = await verify_nothing_lost_nothing_doubled(fault_bench, run)
    finally:
        await primary.set_behaviour(Behaviour.PROMPT)
    assert_whole(verdict)
    reached_primary = [p for p in primary.received if p.incident_id in set(run.incident_ids)]
    assert not reached_primary


async def test_poison_records_on_every_topic(fault_bench: FaultBench) -> None:
    sent = []

    async def poison() -> None:
        sent.extend(await produce_poison(fault_bench.infra.kafka_bootstrap_servers))
        fault_bench.poison.extend(sent)

    run = await run_with(fault_bench, "poison", poison)
    assert {record.position[0] for record in sent} == set(fault_bench.consumers_of)
    verdict = await verify_nothing_lost_nothing_doubled(fault_bench, run, poison_just_sent=sent)
    assert_whole(verdict)


async def _nothing_more() -> None:
    """The fault is already there when the run starts."""


async def test_the_broker_killed_and_restarted_empty(fault_bench: FaultBench) -> None:
    """SIGKILL, then a broker with nothing in it on the same port: every record it had taken is
    gone. The relays notice the new cluster id and publish their retained rows again, in order;
    the inboxes absorb what consumers had already applied. Last of the drills: the dead letters
    of the poison drill die with the broker (they live nowhere else)."""
    broker = fault_bench.infra.broker
    assert broker is not None and broker.process is not None
    forgotten = broker.cluster_id

    async def kill_and_restart_empty() -> None:
        assert broker.process is not None
        broker.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(broker.process.wait)
        await broker.start()

    run = await run_with(fault_bench, "broker-forgets", kill_and_restart_empty)
    assert broker.cluster_id != forgotten
    verdict = await verify_nothing_lost_nothing_doubled(fault_bench, run)
    assert_whole(verdict)
    assert await republished_after_broker_loss(fault_bench) > 0
    for service in SERVICE_NAMES:
        await fault_bench.processes.wait_ready(service)


async def republished_after_broker_loss(bench: FaultBench) -> float:
    """What the relays say they published again, summed over the services' `/metrics`."""
    total = 0.0
    for service in SERVICE_NAMES:
        body = (await bench.clients[service].get("/metrics")).text
        total += sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("emergency_outbox_republished_events_total")
        )
    return total
