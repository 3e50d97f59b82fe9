"""Benchmarks of the audit log: append rate and inclusion-proof latency at a million leaves.

    python -m bench.audit_log [--leaves N]      # `make bench` runs it with the others

Starts its own PostgreSQL (as the tests do), applies audit's migrations and measures, as the
writer role the service uses:

1. batched appends through `store.append`, as the consumer applies a partition's records;
2. one event per transaction, the consumer's one-by-one fallback;
3. the whole ingestion path: events produced to the broker and consumed by the audit service
   (a process), until its log holds them all;
4. inclusion proofs (`store.inclusion_bundle`, what `GET /v1/log/proof/inclusion` runs) at
   random indices of the tree of `--leaves` leaves.

Run alone, it prints its results; `python -m bench` adds them to bench/results/<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from bench.report_to_alert import production_tracing, sink_process
from services.audit import store
from services.audit.handlers import new_leaf
from services.audit.merkle import verify_inclusion
from shared.auth import ensure_dev_keys, mint
from shared.db import create_engine, create_session_factory, migrate
from shared.events import CloudEvent
from shared.events.models import NotificationDelivered
from shared.events.topics import NOTIFICATIONS
from shared.kafka import RecordPosition, ensure_topics
from shared.settings import Settings
from tools.devrun import ServiceProcesses, development_secrets
from tools.localinfra import LocalBroker, LocalPostgres, free_port

BATCH = 500  # the most records the consumer takes from one partition at a time
FILL_BATCH = 5000


def delivered(incident_id: uuid.UUID) -> NotificationDelivered:
    return NotificationDelivered(
        notification_id=uuid.uuid4(),
        incident_id=incident_id,
        obligation_id=uuid.uuid4(),
        party="TCG:150626102",
        channel="webhook",
        contact="图克镇社区矫正突发事件应急处置指挥小组值班室",
        attempt=1,
        outcome="DELIVERED",
        status_code=200,
        latency_ms=12.5,
        attempted_at=datetime.now(UTC),
    )


def sample_leaf(offset: int) -> store.NewLeaf:
    """A leaf the size of a real one (a delivered alert: about 700 bytes of canonical JSON)."""
    incident_id = uuid.uuid4()
    event = CloudEvent.new("notification", delivered(incident_id), incident_id)
    return new_leaf(event, RecordPosition(NOTIFICATIONS, offset % 6, offset))


async def append_batches(sessions, count: int, batch: int, start_offset: int) -> float:
    """Seconds spent appending `count` leaves in transactions of `batch` (not making them)."""
    spent = 0.0
    for first in range(0, count, batch):
        leaves = [sample_leaf(start_offset + first + n) for n in range(min(batch, count - first))]
        began = time.perf_counter()
        async with sessions() as session, session.begin():
            await store.act_as_writer(session)
            await store.append(session, leaves)
        spent += time.perf_counter() - began
    return spent


async def leaf_making_rate(count: int = 5000) -> float:
    began = time.perf_counter()
    for n in range(count):
        sample_leaf(n)
    return count / (time.perf_counter() - began)


async def produce(bootstrap: str, events: list[CloudEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(NOTIFICATIONS, value=e.value(), key=e.key, headers=e.headers())
            for e in events
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def through_the_service(settings: Settings, work: Path, count: int) -> dict:
    """Produce `count` events to the broker; time until the audit service has logged them,
    tracing as production does."""
    async with sink_process(work / "logs") as collector:
        broker = LocalBroker(work / "tansu.log")
        await broker.start()
        bootstrap = broker.bootstrap_servers
        environment = {
            "DATABASE_URL": settings.database_url or "",
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "AUDIT_SIGNING_KEY_SEED": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            # Its schema is applied already (by `main`), as production's migration Job does.
            "MIGRATE_ON_STARTUP": "false",
            **development_secrets(work),
            # Spans as production makes them (its sampler), to a sink standing in for the collector.
            **production_tracing(collector.collector),
        }
        private_key, _ = ensure_dev_keys(work / "auth")
        token = mint(
            private_key.read_bytes(),
            "BLO",
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
        )
        services = ServiceProcesses(environment, {"audit": free_port()}, work / "logs")
        try:
            await ensure_topics(settings.model_copy(update={"kafka_bootstrap_servers": bootstrap}))
            services.start_one("audit")
            await services.wait_ready("audit", 120)
            async with httpx.AsyncClient(
                base_url=services.url("audit"),
                timeout=30,
                headers={"Authorization": f"Bearer {token}"},
            ) as client:
                # One event first: the consumer has joined its group before the clock starts.
                await one_round(client, bootstrap, 1)
                live = [await one_round(client, bootstrap, count) for _ in range(3)]
                backlog = []
                for _ in range(3):
                    # The service alone: a backlog produced while it was down, drained on restart.
                    services.stop_one("audit")
                    await produce(bootstrap, events_of(count))
                    services.start_one("audit")
                    await services.wait_ready("audit", 120)
                    backlog.append(await drain(client, count))
        finally:
            services.stop()
            await broker.stop()
        return {
            "events_per_round": count,
            "live": live,
            "live_events_per_second_median": statistics.median(
                r["events_per_second"] for r in live
            ),
            "backlog": backlog,
            "backlog_events_per_second_median": statistics.median(
                r["events_per_second"] for r in backlog
            ),
        }


def events_of(count: int) -> list[CloudEvent]:
    events = []
    for _ in range(count):
        incident_id = uuid.uuid4()
        events.append(CloudEvent.new("notification", delivered(incident_id), incident_id))
    return events


async def drain(client: httpx.AsyncClient, count: int) -> dict:
    """From the first new leaf to the last: how fast the restarted service works a backlog."""
    before = (await client.get("/v1/log/head")).json()["size"]
    last = before
    while last == before:
        await asyncio.sleep(0.02)
        last = (await client.get("/v1/log/head")).json()["size"]
    began, first = time.perf_counter(), last
    # The backlog is `count` events minus what was logged before the clock could start.
    target = before + count
    while last < target:
        await asyncio.sleep(0.05)
        last = (await client.get("/v1/log/head")).json()["size"]
    elapsed = time.perf_counter() - began
    drained = target - first
    return {
        "events": drained,
        "seconds": round(elapsed, 2),
        "events_per_second": round(drained / elapsed),
    }


async def one_round(client: httpx.AsyncClient, bootstrap: str, count: int) -> dict:
    before = (await client.get("/v1/log/head")).json()["size"]
    events = events_of(count)
    began = time.perf_counter()
    await produce(bootstrap, events)
    produced = time.perf_counter() - began
    while (await client.get("/v1/log/head")).json()["size"] < before + count:
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - began
    return {
        "produce_seconds": round(produced, 2),
        "seconds": round(elapsed, 2),
        "events_per_second": round(count / elapsed),
    }


async def proof_latency(sessions, size: int, samples: int) -> dict:
    timings = []
    rng = random.Random(9162)
    for _ in range(samples):
        index = rng.randrange(size)
        began = time.perf_counter()
        async with sessions() as session, session.begin():
            await store.act_as_writer(session)
            bundle = await store.inclusion_bundle(session, index, size)
        timings.append((time.perf_counter() - began) * 1000)
        verify_inclusion(index, size, bundle.leaf_hash, bundle.proof, bundle.root)
    timings.sort()
    return {
        "tree_size": size,
        "samples": samples,
        "p50_ms": round(statistics.median(timings), 3),
        "p99_ms": round(timings[int(len(timings) * 0.99) - 1], 3),
        "max_ms": round(timings[-1], 3),
    }


def machine() -> dict:
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return {
        "cores": os.cpu_count(),
        "memory_mb": memory_kb // 1024,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def main(leaves: int, service_events: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as scratch:
        work = Path(scratch)
        work.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data folder
        postgres = LocalPostgres(work / "postgres")
        await postgres.start()
        try:
            settings = Settings(database_url=postgres.url, local_data_dir=work)
            await migrate(settings, "audit")
            engine = create_engine(settings, pool_size=4)
            sessions = create_session_factory(engine)
            try:
                batched = 100_000
                seconds = await append_batches(sessions, batched, BATCH, 0)
                single = 2000
                single_seconds = await append_batches(sessions, single, 1, batched)
                results = {
                    "append": {
                        "batched": {
                            "events": batched,
                            "batch": BATCH,
                            "seconds": round(seconds, 2),
                            "events_per_second": round(batched / seconds),
                        },
                        "one_per_transaction": {
                            "events": single,
                            "seconds": round(single_seconds, 2),
                            "events_per_second": round(single / single_seconds),
                        },
                        "leaf_building_per_second": round(await leaf_making_rate()),
                    }
                }
                print(json.dumps(results, indent=2), flush=True)
                results["append"]["through_the_service"] = await through_the_service(
                    settings, work, service_events
                )
                print(json.dumps(results["append"]["through_the_service"]), flush=True)
                size = await store_size(sessions)
                fill_began = time.perf_counter()
                await append_batches(sessions, max(leaves - size, 0), FILL_BATCH, size)
                fill_seconds = time.perf_counter() - fill_began
                size = await store_size(sessions)
                results["fill"] = {
                    "to_size": size,
                    "seconds": round(fill_seconds, 1),
                    "batch": FILL_BATCH,
                }
                await settle(postgres.url)
                gc.collect()  # the garbage of a million leaves is not the proofs' to collect
                await asyncio.sleep(5)  # let the writes of the fill settle on disk
                await proof_latency(sessions, size, 200)  # warm the caches
                rounds = [await proof_latency(sessions, size, 2000) for _ in range(3)]
                results["inclusion_proof"] = {
                    "rounds": rounds,
                    "p99_ms_median": statistics.median(r["p99_ms"] for r in rounds),
                }
            finally:
                await engine.dispose()
        finally:
            await postgres.stop()
    return results


async def settle(database_url: str) -> None:
    """After a million inserts: statistics and a checkpoint, so autovacuum and the background
    writer do not run inside the measurement."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("VACUUM ANALYZE audit.log_entries, audit.tree_nodes")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def store_size(sessions) -> int:
    async with sessions() as session, session.begin():
        await store.act_as_writer(session)
        return await store.log_size(session)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--service-events", type=int, default=20_000)
    arguments = parser.parse_args()
    results = asyncio.run(main(arguments.leaves, arguments.service_events))
    print(json.dumps({"machine": machine(), **results}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    run()
