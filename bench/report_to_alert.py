"""From a report's 201 to its first alert: the system under fixed and flat-out load.

    python -m bench.report_to_alert [--seconds 15] [--rates 10 50 100 200] [--drain 180]
    python -m bench.report_to_alert --intake-only [--seconds 10] [--runs 3] [--profile intake]
    python -m bench.report_to_alert --rates 30 --load-only --census

Starts its own PostgreSQL, broker and the four services as processes (as `make run` does), a
webhook sink in a process of its own standing in for every party's gateway, and then:

1. the floor of this infrastructure: a PostgreSQL commit, and a Kafka produce→consume round
   trip with the consumer settings the services use;
2. open-loop load at each fixed rate (sends are scheduled on the clock, never held back by slow
   answers) and one closed-loop run flat out; for each, the time from the 201 of the POST to the
   first alert of that incident at the sink, p50/p95/p99, the rate sustained, and the CPU
   each process spent per incident, up to `TAIL_SECONDS` after the last first alert (what the
   incidents still set off then is their work too). A fixed rate's first seconds
   (`LEAD_IN_SECONDS`) count for its rate and CPU, and their latencies are reported apart
   (`lead_in`): they are the system coming out of a quiet spell. Where the time to the first
   alert went is read hop by hop from the services' own rows (`first_alert_hops`);
3. intake alone (its relay publishing to the broker, nobody consuming) flat out, as one
   process and as two: reports/s;
4. the peak resident memory of each service over the load runs.

`--intake-only` starts PostgreSQL, the broker and intake alone and runs only step 3 with one
process, `--runs` times: what to repeat while making intake faster.

`--census` has PostgreSQL log every statement once the floor is measured, and each load run
counts the statements of its stretch of the log (the run, its drain and the incidents' tail) by
the application name of their connection: each service's statements an incident. A count the
machine's speed does not move, where the CPU figures of a run move with it; the logging itself
costs the server CPU, so a census run's other figures are not for comparing. Each run also
reads back the write-ahead log it made (the server's `pg_waldump` over the run's stretch of it):
the records and bytes an incident, by kind (a row inserted, updated or locked, an index entry
added) and by relation, which says what PostgreSQL's CPU an incident goes to.

The time of a 201 and the time an alert arrives are read from the same system-wide monotonic
clock in two processes, so they subtract.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import edge, machine_speed
from bench.http1 import Client, HttpError
from shared.auth import ensure_dev_keys, mint
from shared.db import migrate
from shared.events.topics import ALL_TOPICS
from shared.settings import REPOSITORY_ROOT, SERVICE_NAMES, Settings
from tests.support import directory_with_contacts
from tools.devrun import ServiceProcesses, development_secrets
from tools.localinfra import (
    Infrastructure,
    PostgresInstallation,
    free_port,
    free_ports,
    infrastructure,
    wait_for_port,
)

SAMPLES = REPOSITORY_ROOT / "examples" / "incidents"
FLOOR_TOPIC = "bench.floor"
# Connections the load generator keeps open to intake, as a platform's gateway would.
CONNECTIONS = 64
# How long a caller waits for its 201 before it gives up (and would retry with the same key):
# an overloaded system answers late, and a late answer still counts as accepted.
POST_TIMEOUT_SECONDS = 30.0
PROFILES = REPOSITORY_ROOT / ".local" / "profiles"
# `--census`: the local PostgreSQL logs every statement, each line led by the application name
# its connection gave (the services' pools give theirs) and the backend's pid.
CENSUS_SETTINGS = {"log_statement": "all", "log_line_prefix": "%a|%p|"}
LOGGED_STATEMENT = re.compile(r"^([^|\n]*)\|\d*\|LOG:  (?:statement|execute [^:]*): ")
# `--census`: a record as `pg_waldump` shows it: its resource manager, total length, kind, and
# the relation of its first block (`rel tablespace/database/relfilenode`), where it has one.
WAL_RECORD = re.compile(
    r"^rmgr: (\S+)\s+len \(rec/tot\):\s*\d+/\s*(\d+),.*?desc: (\S+)(?:.*?rel \d+/\d+/(\d+))?"
)
# The kinds and relations a WAL census reports, the most frequent first.
WAL_CENSUS_TOP = 25
CURRENT_WAL_POSITION = "SELECT pg_current_wal_lsn()::text"
# Before idle CPU is measured the system is left quiet this long: a consumer's pauses grow to
# their longest (an eighth of the quiet spell, docs/performance.md) after 16 s of quiet.
IDLE_SETTLE_SECONDS = 20.0
IDLE_SECONDS = 20.0
# A fixed rate's first seconds, whose latencies are reported apart (`measured`): the first
# records after a quiet spell wait out the consumers' pauses, up to 2 s at each hop, and the
# burst they make then drains (about 4 s at 50/s after the idle measurement, 2026-12-03).
LEAD_IN_SECONDS = 5.0
# After a run's last first alert, what its incidents still set off (later alerts, their
# answers, audit's lingering batches and its findings) finishes within this; the run's CPU is
# read after it.
TAIL_SECONDS = 3.0
# The figures the machine's swing moves most are measured this many times: CPU an incident at
# `REPEATED_RATE`, and intake alone as one process. Its neighbours only ever add to a run's CPU
# (timeit's rule), so the summary takes the least CPU and the most reports/s, each beside all
# the runs and the machine's speed during each (`bench.machine_speed`).
REPEATS = 3
REPEATED_RATE = 50.0
PROFILE_SUFFIXES = {"flamegraph": "svg", "raw": "txt", "speedscope": "json"}


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)]


def summary_ms(values_ns: Sequence[int]) -> dict[str, float]:
    values = [v / 1e6 for v in values_ns]
    return {
        "p50_ms": round(percentile(values, 0.50), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "max_ms": round(max(values), 2),
    }


# --- the floor ------------------------------------------------------------------------------


async def postgres_commit_floor(database_url: str, samples: int = 2000) -> dict[str, float]:
    """One small INSERT committed on its own, as each hop commits what it applied."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS public.bench_floor (id uuid PRIMARY KEY, body text)"
        )
        timings = []
        for _ in range(samples):
            began = time.perf_counter_ns()
            await connection.execute(
                "INSERT INTO public.bench_floor VALUES ($1, $2)", uuid.uuid4(), "x" * 200
            )
            timings.append(time.perf_counter_ns() - began)
        await connection.execute("DROP TABLE public.bench_floor")
    finally:
        await connection.close()
    return summary_ms(timings)


async def kafka_round_trip_floor(
    bootstrap: str, settings: Settings, samples: int = 1000
) -> dict[str, float]:
    """Produce one record (acks=all) and wait until a consumer, polling as ours do, has it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    await producer.start()
    await consumer.start()
    try:
        # Make sure the topic exists (auto-created or not) before assigning it.
        await producer.send_and_wait(FLOOR_TOPIC, b"warm-up", partition=0)
        partition = TopicPartition(FLOOR_TOPIC, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        timings = []
        for n in range(samples):
            payload = str(n).encode()
            began = time.perf_counter_ns()
            await producer.send_and_wait(FLOOR_TOPIC, payload, partition=0)
            while True:
                batches = await consumer.getmany(partition, timeout_ms=200, max_records=500)
                if any(r.value == payload for r in batches.get(partition, [])):
                    break
            timings.append(time.perf_counter_ns() - began)
    finally:
        await consumer.stop()
        await producer.stop()
    return summary_ms(timings)


async def topic_records(bootstrap: str) -> dict[str, int]:
    """How many records each of the pipeline's topics holds so far (end offsets, summed over
    its partitions): their growth over a run, per incident, is the pipeline's work in events."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        known = await consumer.topics()
        counts = {}
        for topic in ALL_TOPICS:
            partitions = consumer.partitions_for_topic(topic) if topic in known else None
            ends = await consumer.end_offsets(
                [TopicPartition(topic, partition) for partition in partitions or ()]
            )
            counts[topic] = sum(ends.values())
        return counts
    finally:
        await consumer.stop()


def events_per_incident(
    before: dict[str, int], after: dict[str, int], incidents: int
) -> dict[str, float]:
    grown = {topic: after[topic] - before.get(topic, 0) for topic in after}
    per_incident = {topic: round(n / max(incidents, 1), 2) for topic, n in grown.items()}
    return per_incident | {"all": round(sum(grown.values()) / max(incidents, 1), 2)}


# --- the system -----------------------------------------------------------------------------


@dataclass
class Sink:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    @property
    def collector(self) -> str:
        """The sink as the services' OTLP endpoint: it answers the spans and keeps none."""
        return f"http://127.0.0.1:{self.port}"

    async def arrivals(self, client: httpx.AsyncClient) -> dict[str, int]:
        """Incident id → arrival of its first alert (monotonic ns)."""
        received = (await client.get(self.url)).json()
        first: dict[str, int] = {}
        for incident_id, _party, arrived in received:
            if incident_id not in first or arrived < first[incident_id]:
                first[incident_id] = arrived
        return first

    async def clear(self, client: httpx.AsyncClient) -> None:
        await client.delete(self.url)


@contextlib.asynccontextmanager
async def bench_process(
    module: str, log: Path, *arguments: str, within: float = 30
) -> AsyncIterator[tuple[int, subprocess.Popen[bytes]]]:
    """`python -m <module> --port <port> <arguments>` in a process of its own, logging to `log`,
    once it listens: its port and process. Stopped on leaving."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), *arguments],
        cwd=REPOSITORY_ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        await wait_for_port(port, within, process)
        yield port, process
    finally:
        process.terminate()
        process.wait(10)


@contextlib.asynccontextmanager
async def machine_speed_probe(work: Path) -> AsyncIterator[Path]:
    """`bench.machine_speed` in a process of its own while inside: the file of its samples."""
    samples = work / "machine-speed.txt"
    samples.parent.mkdir(parents=True, exist_ok=True)
    samples.write_text("", "utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.machine_speed", "--output", str(samples)],
        cwd=REPOSITORY_ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield samples
    finally:
        process.terminate()
        process.wait(10)


def machine_unit_us(samples: Path, began: float, ended: float) -> float | None:
    """The machine's speed over a run's stretch (monotonic seconds): µs a probe's unit took."""
    value = machine_speed.unit_us_between(machine_speed.read_samples(samples), began, ended)
    return None if math.isnan(value) else value


@contextlib.asynccontextmanager
async def sink_process(log_dir: Path) -> AsyncIterator[Sink]:
    async with bench_process("bench.sink", log_dir / "sink.log") as (port, process):
        yield Sink(port, process)


class Reports:
    """The sample incidents of every category in turn, reported now, each one new."""

    def __init__(self, private_key: bytes, settings: Settings) -> None:
        self._samples = [
            json.loads(path.read_text("utf-8")) for path in sorted(SAMPLES.glob("*.json"))
        ]
        self._cycle = itertools.cycle(enumerate(self._samples))
        self._tokens = {
            sample["reporter"]["party"]: mint(
                private_key,
                sample["reporter"]["party"],
                issuer=settings.auth_issuer,
                audience=settings.auth_audience,
            )
            for sample in self._samples
        }

    def next(self) -> tuple[int, bytes, dict[str, str]]:
        sample, template = next(self._cycle)
        body = dict(template)
        # Subjects of their own: a report naming an open incident's subject is a report of that
        # incident (R20), no new one.
        serial = uuid.uuid4().hex[:12]
        body["subjects"] = [
            {**subject, "id": f"{subject['id']}-{serial}"} for subject in template["subjects"]
        ]
        now = datetime.now(UTC)
        body["occurred_at"] = (now - timedelta(minutes=5)).isoformat()
        body["discovered_at"] = (now - timedelta(minutes=2)).isoformat()
        headers = {
            "Authorization": f"Bearer {self._tokens[body['reporter']['party']]}",
            "Content-Type": "application/json",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        return sample, json.dumps(body, ensure_ascii=False).encode(), headers


@dataclass
class Run:
    """What one load run saw: per incident the 201's time and which sample it was."""

    accepted: dict[str, int] = field(default_factory=dict)
    sample_of: dict[str, int] = field(default_factory=dict)
    # By status code, or by the client's error when no answer came (a timeout, a reset).
    refused: dict[str, int] = field(default_factory=dict)
    began_ns: int = 0
    ended_ns: int = 0

    @property
    def seconds(self) -> float:
        return (self.ended_ns - self.began_ns) / 1e9

    async def post(self, client: Client, reports: Reports) -> None:
        sample, content, headers = reports.next()
        try:
            response = await client.post("/v1/incidents", content, headers)
        except HttpError as error:
            self._refuse(str(error))
            return
        answered = time.monotonic_ns()
        if response.status_code == 201:
            incident_id = response.json()["id"]
            self.accepted[incident_id] = answered
            self.sample_of[incident_id] = sample
        else:
            self._refuse(str(response.status_code))

    def _refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def alerting(self, samples: set[int]) -> dict[str, int]:
        """The accepted incidents whose kind calls for an immediate alert."""
        return {i: t for i, t in self.accepted.items() if self.sample_of[i] in samples}

    def split_at(
        self, lead_in: float, incidents: dict[str, int]
    ) -> tuple[dict[str, int], dict[str, int]]:
        """`incidents` answered in the run's first `lead_in` seconds, and those after."""
        ends = self.began_ns + int(lead_in * 1e9)
        leading = {i: t for i, t in incidents.items() if t < ends}
        return leading, {i: t for i, t in incidents.items() if t >= ends}


async def at_fixed_rate(client: Client, reports: Reports, rate: float, seconds: float) -> Run:
    """Open loop: the n-th report leaves at n/rate whatever happened to the ones before."""
    run = Run(began_ns=time.monotonic_ns())
    start = time.monotonic()
    in_flight: set[asyncio.Task] = set()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(run.post(client, reports))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    run.ended_ns = time.monotonic_ns()
    return run


async def flat_out(
    clients: Sequence[Client], reports: Reports, seconds: float, concurrency: int
) -> Run:
    """Closed loop: `concurrency` callers, each posting again as soon as it has its answer."""
    run = Run(began_ns=time.monotonic_ns())
    stop_at = time.monotonic() + seconds

    async def caller(client: Client) -> None:
        while time.monotonic() < stop_at:
            await run.post(client, reports)

    await asyncio.gather(*(caller(clients[n % len(clients)]) for n in range(concurrency)))
    run.ended_ns = time.monotonic_ns()
    return run


async def first_alerts(
    expected: Iterable[str], sink: Sink, client: httpx.AsyncClient, within: float
) -> dict[str, int]:
    """Wait until every expected incident has an alert at the sink, or `within` seconds pass."""
    expected = set(expected)
    give_up = time.monotonic() + within
    while True:
        arrivals = await sink.arrivals(client)
        if expected <= arrivals.keys() or time.monotonic() > give_up:
            return arrivals
        await asyncio.sleep(0.5)


def repeated(run: dict[str, Any]) -> dict[str, Any]:
    """What the summary reads of each run at `REPEATED_RATE`."""
    kept = ("cpu_ms_per_incident", "machine_unit_us", "p50_ms", "p99_ms", "sustained_per_second")
    return {name: run[name] for name in kept if name in run}


def measured(
    run: Run,
    arrivals: dict[str, int],
    alerting: set[int],
    offered: float | None,
    lead_in: float = 0.0,
) -> dict[str, Any]:
    """The run's figures; its first `lead_in` seconds count for its rate and CPU, and their
    latencies are reported apart (`lead_in`): the system coming out of a quiet spell, where a
    consumer's pause still holds the first records (docs/performance.md, "An idle system
    sleeps"), is not the steady state the figures are for."""
    expected = run.alerting(alerting)
    leading, counted = run.split_at(lead_in, expected)
    latencies = [arrivals[i] - t for i, t in counted.items() if i in arrivals]
    result: dict[str, Any] = {
        "offered_per_second": offered,
        "seconds": round(run.seconds, 2),
        "accepted": len(run.accepted),
        "refused": run.refused,
        "accepted_per_second": round(len(run.accepted) / run.seconds, 1),
        "expecting_alert": len(counted),
        "without_alert": len(counted) - len(latencies),
    }
    if latencies:
        result.update(summary_ms(latencies))
    alerted = [i for i in expected if i in arrivals]
    if alerted:
        last = max(arrivals[i] for i in alerted)
        # Incidents carried from POST to first alert per second, over the whole run and the
        # drain after it: the rate the system sustains, whatever was offered.
        result["sustained_per_second"] = round(
            len(run.accepted) * len(alerted) / len(expected) / ((last - run.began_ns) / 1e9), 1
        )
    if leading:
        lead_latencies = [arrivals[i] - t for i, t in leading.items() if i in arrivals]
        result["lead_in"] = {
            "seconds": lead_in,
            "expecting_alert": len(leading),
            "without_alert": len(leading) - len(lead_latencies),
        } | (summary_ms(lead_latencies) if lead_latencies else {})
    return result


# Each incident's way to its first alert, by the times the services' own rows keep: the report
# taken by escalation, its duties taken by notification, the alert stored, its first delivery
# opened and answered. A row's time is its transaction's start (`now()`), on the database's
# clock. (An outbox row's `published_at` is set by the relay's next pass, not when it was sent.)
HOPS_QUERY = """
WITH incident AS (SELECT unnest($1::text[]) AS id),
reported AS (
    SELECT DISTINCT ON (o.key) o.key AS id, o.event_id
    FROM intake.outbox o JOIN incident i ON i.id = o.key
    WHERE o.topic = 'incidents.v1' ORDER BY o.key, o.id
),
duties AS (
    SELECT o.key AS id, min(n.processed_at) AS taken_at
    FROM escalation.outbox o JOIN incident i ON i.id = o.key
    LEFT JOIN notification.inbox n ON n.ce_id = o.event_id
    WHERE o.topic = 'escalations.v1' GROUP BY o.key
),
alerted AS (
    SELECT n.incident_id::text AS id, min(n.created_at) AS stored_at,
           min(d.created_at) AS opened_at, min(d.delivered_at) AS delivered_at
    FROM notification.notifications n JOIN incident i ON i.id = n.incident_id::text
    LEFT JOIN notification.deliveries d ON d.notification_id = n.id
    GROUP BY n.incident_id
)
SELECT r.id, e.processed_at AS escalated, d.taken_at AS notified, a.stored_at AS stored,
       a.opened_at AS opened, a.delivered_at AS delivered
FROM reported r
LEFT JOIN escalation.inbox e ON e.ce_id = r.event_id
LEFT JOIN duties d USING (id) LEFT JOIN alerted a USING (id)
"""
HOPS = ("escalated", "notified", "stored", "opened", "delivered")


async def first_alert_hops(
    database_url: str, expected: dict[str, int], arrivals: dict[str, int]
) -> dict[str, Any]:
    """Where the time from the 201 to the first alert went (`HOPS_QUERY`, `hops_summary`)."""
    arrived = {i: arrivals[i] for i in expected if i in arrivals}
    if not arrived:
        return {}
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(HOPS_QUERY, list(arrived))
    finally:
        await connection.close()
    # The bench's times are the system's monotonic clock, the rows' its wall clock.
    return hops_summary(rows, expected, arrived, time.time_ns() - time.monotonic_ns())


def hops_summary(
    rows: Iterable[Mapping[str, Any]],
    answered: dict[str, int],
    arrived: dict[str, int],
    wall_ns: int,
) -> dict[str, Any]:
    """Each hop's p50/p95/p99 over the incidents whose every time is known, and its mean over
    the slowest hundredth of them by the whole way (the tail's cause: one hop slow for all of
    them, or queueing spread over every hop). `answered` and `arrived` are monotonic ns,
    `wall_ns` what to add to them for the wall clock of the rows' times."""
    names = ("answered", *HOPS, "alert_arrived")
    by_incident: dict[str, dict[str, int]] = {}
    for row in rows:
        if any(row[name] is None for name in HOPS):
            continue
        times = [
            answered[row["id"]] + wall_ns,
            *(int(row[name].timestamp() * 1e9) for name in HOPS),
            arrived[row["id"]] + wall_ns,
        ]
        by_incident[row["id"]] = {
            f"{earlier}→{later}": b - a
            for (earlier, a), (later, b) in itertools.pairwise(zip(names, times, strict=True))
        }
    if not by_incident:
        return {}
    whole = {i: arrived[i] - answered[i] for i in by_incident}
    slowest = sorted(by_incident, key=whole.__getitem__)[-max(1, len(by_incident) // 100) :]
    return {
        "incidents": len(by_incident),
        "hops": {
            hop: summary_ms([steps[hop] for steps in by_incident.values()])
            | {
                "slowest_hundredth_mean_ms": round(
                    sum(by_incident[i][hop] for i in slowest) / len(slowest) / 1e6, 2
                )
            }
            for hop in (f"{a}→{b}" for a, b in itertools.pairwise(names))
        },
    }


def cpu_and_kernel(process: psutil.Process, with_children: bool = False) -> tuple[float, float]:
    """CPU time the process used so far, all of it and the part in the kernel (its system
    calls, the network stack's work for them, page faults), from one read of its times."""
    times = process.cpu_times()
    total, kernel = times.user + times.system, times.system
    if with_children:
        # A child that ended meanwhile (the backend of a closed connection) counts once its
        # parent reaped it; without this a connection opened and closed during a run took its
        # PostgreSQL CPU with it.
        total += times.children_user + times.children_system
        kernel += times.children_system
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
                kernel += child_times.system
    return total, kernel


def cpu_total(process: psutil.Process, with_children: bool = False, kernel: bool = False) -> float:
    """CPU time the process used so far (`kernel`: the part in the kernel only)."""
    total, in_kernel = cpu_and_kernel(process, with_children)
    return in_kernel if kernel else total


def _infrastructure_cpu_and_kernel(infra: Infrastructure) -> dict[str, tuple[float, float]]:
    used: dict[str, tuple[float, float]] = {}
    for name, local in (("postgres", infra.postgres), ("broker", infra.broker)):
        if local is not None and local.process is not None:
            with contextlib.suppress(psutil.Error):
                used[name] = cpu_and_kernel(psutil.Process(local.process.pid), True)
    return used


def cpu_and_kernel_of_all(
    processes: ServiceProcesses, infra: Infrastructure
) -> tuple[dict[str, float], dict[str, float]]:
    """CPU time used so far by each service, PostgreSQL (all its backends) and the broker, and
    the part of it in the kernel: each process read once."""
    used: dict[str, tuple[float, float]] = {}
    for service, process in processes.processes.items():
        with contextlib.suppress(psutil.Error):
            used[service] = cpu_and_kernel(psutil.Process(process.pid))
    used |= _infrastructure_cpu_and_kernel(infra)
    return (
        {name: total for name, (total, _) in used.items()},
        {name: kernel for name, (_, kernel) in used.items()},
    )


def infrastructure_cpu(infra: Infrastructure) -> dict[str, float]:
    """CPU time used so far by PostgreSQL (all its backends) and the broker, where local."""
    return {name: total for name, (total, _) in _infrastructure_cpu_and_kernel(infra).items()}


def cpu_seconds(processes: ServiceProcesses, infra: Infrastructure) -> dict[str, float]:
    """CPU time used so far by each service, PostgreSQL (all its backends) and the broker."""
    return cpu_and_kernel_of_all(processes, infra)[0]


def kernel_shares(
    before: dict[str, float],
    after: dict[str, float],
    kernel_before: dict[str, float],
    kernel_after: dict[str, float],
) -> dict[str, float]:
    """Each process's share of its CPU over a run that was the kernel's, not its own code's:
    where a figure is the machine's (system calls, the network stack, the disk's flushes)
    rather than the code's."""
    shares = {}
    for name in after:
        used = after[name] - before.get(name, 0.0)
        in_kernel = kernel_after.get(name, 0.0) - kernel_before.get(name, 0.0)
        shares[name] = round(in_kernel / used, 3) if used > 0 else 0.0
    return shares


def cpu_ms_per_incident(
    before: dict[str, float],
    after: dict[str, float],
    idle_per_second: dict[str, float],
    seconds: float,
    incidents: int,
) -> dict[str, float]:
    """CPU each process spent per incident, less what it spends idle (polls, timers)."""
    return {
        name: round(
            max(after[name] - before.get(name, 0.0) - idle_per_second.get(name, 0.0) * seconds, 0)
            * 1000
            / max(incidents, 1),
            2,
        )
        for name in after
    }


class MemoryWatch:
    """Peak resident memory of each service process, sampled while the runs go on."""

    def __init__(self, processes: ServiceProcesses) -> None:
        self._processes = processes
        self.peak_mb: dict[str, float] = {}
        self._task: asyncio.Task | None = None

    async def _sample(self) -> None:
        while True:
            for service, process in list(self._processes.processes.items()):
                with contextlib.suppress(psutil.Error):
                    rss = psutil.Process(process.pid).memory_info().rss / 2**20
                    self.peak_mb[service] = max(self.peak_mb.get(service, 0.0), rss)
            await asyncio.sleep(0.25)

    def __enter__(self) -> MemoryWatch:
        self._task = asyncio.create_task(self._sample())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()


# The production overlay's settings, of which the bench takes the tracing ones.
PRODUCTION_OVERLAY = REPOSITORY_ROOT / "deploy" / "k8s" / "overlays" / "prod" / "kustomization.yaml"
TRACING_SETTINGS = ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "TRACES_RESERVOIR_PER_SECOND")


def production_tracing(collector: str) -> dict[str, str]:
    """Tracing as production runs it: its sampler, read from the production overlay, and every
    sampled span exported over OTLP to `collector` (the sink, which answers and forgets). So
    spans cost here what they cost there."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector, **production_sampler()}


def production_sampler() -> dict[str, str]:
    """The production overlay's sampler settings; an overlay without them fails the bench."""
    overlay = yaml.safe_load(PRODUCTION_OVERLAY.read_text(encoding="utf-8"))
    [environment] = [
        generated
        for generated in overlay["configMapGenerator"]
        if generated["name"] == "correction-emergency-env"
    ]
    production = dict(literal.split("=", 1) for literal in environment["literals"])
    return {name: production[name] for name in TRACING_SETTINGS}


async def apply_schemas(infra: Infrastructure, services: Iterable[str]) -> None:
    """The services' schemas brought to their heads before the services start, which then do
    not migrate: as production runs them (the migration Jobs, `MIGRATE_ON_STARTUP=false`)."""
    settings = Settings(database_url=infra.database_url)
    for service in services:
        await migrate(settings, service)


# The load comes from one generator speaking for few reporters; the per-caller limit protects
# the edge from one noisy client and is not what is measured here.
UNLIMITED_CALLERS = {"RATE_LIMIT_PER_SECOND": "1000000", "RATE_LIMIT_BURST": "1000000"}


def service_environment(
    work: Path, infra: Infrastructure, alerts_url: str, collector: str
) -> dict[str, str]:
    directory = directory_with_contacts(
        work / "directory.yaml", lambda _party: [{"channel": "webhook", "address": alerts_url}]
    )
    return {
        **infra.environment(),
        **development_secrets(work),
        **production_tracing(collector),
        "DIRECTORY_FILE": str(directory),
        "ALERTS_FILE": str(work / "alerts.jsonl"),
        "MIGRATE_ON_STARTUP": "false",
        **UNLIMITED_CALLERS,
    }


def load_generator() -> dict[str, float]:
    """CPU time this process (the callers, on the same cores) used so far."""
    times = psutil.Process().cpu_times()
    return {"load_generator": times.user + times.system}


async def idle_cpu(
    processes: ServiceProcesses, infra: Infrastructure, seconds: float = 10.0
) -> dict[str, float]:
    before = cpu_seconds(processes, infra)
    await asyncio.sleep(seconds)
    after = cpu_seconds(processes, infra)
    return {name: (after[name] - before.get(name, 0.0)) / seconds for name in after}


@dataclass
class Bench:
    """The running system and what the runs share: the sink, the clients, the idle CPU."""

    processes: ServiceProcesses
    infra: Infrastructure
    sink: Sink
    intake: Client
    sink_client: httpx.AsyncClient
    reports: Reports
    idle: dict[str, float] = field(default_factory=dict)
    alerting: set[int] = field(default_factory=set)
    profile: str | None = None
    profile_format: str = "flamegraph"
    profile_dir: Path = PROFILES
    # `--census`: PostgreSQL's log, whose statements each run counts
    census: Path | None = None
    # `bench.machine_speed`'s samples, read for each run's stretch
    speed: Path | None = None

    async def measure(
        self,
        load: Any,
        offered: float | None,
        drain: float,
        lead_in: float = 0.0,
        repeat: int = 1,
    ) -> dict[str, Any]:
        await self.sink.clear(self.sink_client)
        records = await topic_records(self.infra.kafka_bootstrap_servers)
        logged_from = self.census.stat().st_size if self.census is not None else 0
        wal_from = await wal_position(self.infra.database_url) if self.census else None
        before, kernel_before = cpu_and_kernel_of_all(self.processes, self.infra)
        began = time.monotonic()
        label = f"{offered:g}-per-second" if offered else "flat-out"
        # A repeated run's profile beside the first's, not over it.
        with self._profiled(label if repeat == 1 else f"{label}-{repeat}"):
            run = await load
        expected = run.alerting(self.alerting) if self.alerting else run.accepted
        arrivals = await first_alerts(expected, self.sink, self.sink_client, drain)
        await asyncio.sleep(TAIL_SECONDS)
        elapsed = time.monotonic() - began
        after, kernel_after = cpu_and_kernel_of_all(self.processes, self.infra)
        result = measured(run, arrivals, self.alerting, offered, lead_in)
        result["cpu_ms_per_incident"] = cpu_ms_per_incident(
            before, after, self.idle, elapsed, len(run.accepted)
        )
        result["kernel_share_of_cpu"] = kernel_shares(before, after, kernel_before, kernel_after)
        if self.speed is not None:
            result["machine_unit_us"] = machine_unit_us(self.speed, began, began + elapsed)
        result["first_alert_hops"] = await first_alert_hops(
            self.infra.database_url, run.split_at(lead_in, expected)[1], arrivals
        )
        result["events_per_incident"] = events_per_incident(
            records, await topic_records(self.infra.kafka_bootstrap_servers), len(run.accepted)
        )
        if self.census is not None:
            result["statements_per_incident"] = statements_per_incident(
                statements_by_service(logged_since(self.census, logged_from)),
                len(run.accepted),
            )
        if wal_from is not None and self.infra.postgres is not None:
            result["wal_per_incident"] = await wal_written(
                self.infra.database_url, self.infra.postgres.data_dir, wal_from, len(run.accepted)
            )
        print(json.dumps(result), flush=True)
        return result

    @contextlib.contextmanager
    def _profiled(self, label: str) -> Iterator[None]:
        if self.profile is None:
            yield
            return
        with profiled(
            self.profile,
            self.processes.processes[self.profile].pid,
            label,
            self.profile_dir,
            self.profile_format,
        ):
            yield


@contextlib.contextmanager
def profiled(
    service: str, pid: int, label: str, folder: Path, form: str = "flamegraph"
) -> Iterator[None]:
    """With `--profile SERVICE`: a py-spy flame graph of that service during the load (or its
    stacks collapsed, one a line, with `form` "raw": for reading with grep and sort)."""
    spy_program = Path(sys.executable).with_name("py-spy")
    if not spy_program.exists():
        # `make bench` installs the bench extra; a bare `make install` does not.
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install -e '.[bench]'")
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / f"{service}-{label}.{PROFILE_SUFFIXES[form]}"
    spy = subprocess.Popen(
        [
            str(spy_program),
            "record",
            "--nonblocking",
            "--format",
            form,
            "--pid",
            str(pid),
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its flame graph when interrupted
        spy.wait(30)
        print(f"profile of {service}: {output}", flush=True)


def statements_by_service(lines: Iterable[str]) -> Counter[str]:
    """The statements of a stretch of PostgreSQL's log (`--census`), by application name."""
    counted: Counter[str] = Counter()
    for line in lines:
        found = LOGGED_STATEMENT.match(line)
        if found is not None:
            counted[found.group(1) or "unnamed"] += 1
    return counted


def statements_per_incident(counted: Counter[str], incidents: int) -> dict[str, float]:
    """Each service's statements an incident, and all the services' together."""
    if not incidents:
        return {}
    result = {name: round(counted[name] / incidents, 2) for name in SERVICE_NAMES}
    result["services"] = round(sum(counted[name] for name in SERVICE_NAMES) / incidents, 2)
    return result


def logged_since(log: Path, offset: int) -> list[str]:
    with log.open("rb") as lines:
        lines.seek(offset)
        return lines.read().decode("utf-8", errors="replace").splitlines()


def wal_census(
    lines: Iterable[str], relations: Mapping[str, str], incidents: int, top: int = WAL_CENSUS_TOP
) -> dict[str, Any]:
    """What a stretch of the write-ahead log (`pg_waldump`'s lines) holds an incident: its
    records and bytes, and the records by kind (`Heap/UPDATE`, `Btree/INSERT_LEAF`…) and by
    relation and kind (`relations`: relfilenode to name), the `top` most frequent of each."""
    records = 0
    size = 0
    kinds: Counter[str] = Counter()
    by_relation: Counter[str] = Counter()
    for line in lines:
        found = WAL_RECORD.match(line)
        if found is None:
            continue
        manager, length, kind, relfilenode = found.groups()
        records += 1
        size += int(length)
        kinds[f"{manager}/{kind}"] += 1
        if relfilenode is not None:
            name = relations.get(relfilenode, relfilenode)
            by_relation[f"{name} {manager}/{kind}"] += 1
    per = max(incidents, 1)
    return {
        "records": round(records / per, 1),
        "bytes": round(size / per),
        "by_kind": {name: round(n / per, 2) for name, n in kinds.most_common(top)},
        "by_relation": {name: round(n / per, 2) for name, n in by_relation.most_common(top)},
    }


async def wal_position(database_url: str) -> str:
    connection = await asyncpg.connect(database_url)
    try:
        return str(await connection.fetchval(CURRENT_WAL_POSITION))
    finally:
        await connection.close()


async def wal_written(
    database_url: str, data_dir: Path, since: str, incidents: int
) -> dict[str, Any]:
    """`--census`: `wal_census` of what the server wrote to its log from `since` until now."""
    connection = await asyncpg.connect(database_url)
    try:
        until = str(await connection.fetchval(CURRENT_WAL_POSITION))
        relations = {
            str(row["relfilenode"]): f"{row['nspname']}.{row['relname']}"
            for row in await connection.fetch(
                "SELECT c.relfilenode, n.nspname, c.relname FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relfilenode <> 0"
            )
        }
    finally:
        await connection.close()
    dump = await asyncio.to_thread(
        subprocess.run,
        [
            PostgresInstallation.of_the_wheel().program("pg_waldump"),
            "--path",
            str(data_dir / "pg_wal"),
            "--start",
            since,
            "--end",
            until,
        ],
        capture_output=True,
        text=True,
    )
    if dump.returncode != 0 and not dump.stdout:
        return {"error": dump.stderr.strip()[-500:]}
    return wal_census(dump.stdout.splitlines(), relations, incidents)


async def log_every_statement(database_url: str) -> None:
    """`--census`: from now on the server logs every statement (`CENSUS_SETTINGS`)."""
    connection = await asyncpg.connect(database_url)
    try:
        for name, value in CENSUS_SETTINGS.items():
            await connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        await connection.execute("SELECT pg_reload_conf()")
    finally:
        await connection.close()


async def system_runs(
    work: Path,
    infra: Infrastructure,
    rates: Sequence[float],
    seconds: float,
    drain: float,
    profile: str | None,
    profile_format: str,
    load_only: bool = False,
    census: Path | None = None,
    repeats: int = REPEATS,
) -> dict[str, Any]:
    settings = Settings()
    private_key, _ = ensure_dev_keys(work / "auth")
    reports = Reports(private_key.read_bytes(), settings)
    async with sink_process(work / "logs") as sink, machine_speed_probe(work / "logs") as speed:
        environment = service_environment(work, infra, sink.url, sink.collector)
        processes = ServiceProcesses(environment, free_ports(SERVICE_NAMES), work / "logs")
        try:
            await apply_schemas(infra, SERVICE_NAMES)
            await processes.start(120)
            async with (
                intake_client(processes.url("intake")) as intake,
                httpx.AsyncClient(timeout=30) as sink_client,
            ):
                bench = Bench(
                    processes,
                    infra,
                    sink,
                    intake,
                    sink_client,
                    reports,
                    profile=profile,
                    profile_format=profile_format,
                    census=census,
                    speed=speed,
                )
                results: dict[str, Any] = {}
                with MemoryWatch(processes) as memory:
                    # Warm up (connections, caches, consumer groups) and learn which sample
                    # incidents call for an immediate alert: only those have a first alert.
                    warm = await at_fixed_rate(intake, reports, 10, 7)
                    arrivals = await first_alerts(warm.accepted, sink, sink_client, 30)
                    bench.alerting = {warm.sample_of[i] for i in warm.accepted if i in arrivals}
                    # Idle as a county's system is almost always: quiet for a while, so its
                    # consumers look at the broker at their longest pause.
                    await asyncio.sleep(IDLE_SETTLE_SECONDS)
                    bench.idle = await idle_cpu(processes, infra, IDLE_SECONDS)
                    results["idle_cpu_ms_per_second"] = {
                        name: round(value * 1000, 1) for name, value in bench.idle.items()
                    }
                    results["rates"] = []
                    for rate in rates:
                        runs = [
                            await bench.measure(
                                at_fixed_rate(intake, reports, rate, LEAD_IN_SECONDS + seconds),
                                rate,
                                drain,
                                LEAD_IN_SECONDS,
                                repeat,
                            )
                            for repeat in range(1, (repeats if rate == REPEATED_RATE else 1) + 1)
                        ]
                        results["rates"].append(runs[0])
                        if len(runs) > 1:
                            results["cpu_repeats"] = [repeated(run) for run in runs]
                    results["flat_out"] = await bench.measure(
                        flat_out([intake], reports, seconds, CONNECTIONS), None, drain
                    )
                results["peak_rss_mb"] = {k: round(v, 1) for k, v in memory.peak_mb.items()}
                print(json.dumps(results["peak_rss_mb"]), flush=True)
                if load_only:
                    return results
                results["random_tokens"] = await edge.random_tokens(
                    processes.url("intake"), processes.processes["intake"].pid
                )
                print(json.dumps(results["random_tokens"]), flush=True)
                results["intake_alone"] = await intake_alone(
                    bench, environment, seconds, work, repeats
                )
                results["stack_floor"] = await stack_floor(infra, reports, seconds, work / "logs")
        finally:
            processes.stop()
    return results


async def intake_alone(
    bench: Bench, environment: dict[str, str], seconds: float, work: Path, repeats: int
) -> list[dict[str, Any]]:
    """Intake flat out with the other services stopped, as one process (`repeats` times) and
    as two replicas (two processes, the load spread over both, as a Service spreads it over
    pods)."""
    for service in ("escalation", "notification", "audit"):
        bench.processes.stop_one(service)
    await asyncio.sleep(2)
    idle = await idle_cpu(bench.processes, bench.infra, 5.0)
    replicas = ServiceProcesses(environment, {"intake": free_port()}, work / "logs-replica")
    results = []

    def used() -> dict[str, float]:
        replica = cpu_seconds(replicas, bench.infra).get("intake")
        return (
            cpu_seconds(bench.processes, bench.infra)
            | ({"intake_replica": replica} if replica is not None else {})
            | load_generator()
        )

    try:
        for _ in range(repeats):
            results.append(
                await intake_flat_out(
                    [bench.intake], bench.reports, seconds, used, idle, bench.speed
                )
            )
        await replicas.start(120)
        async with intake_client(replicas.url("intake")) as replica:
            results.append(
                await intake_flat_out(
                    [bench.intake, replica], bench.reports, seconds, used, idle, bench.speed
                )
            )
    finally:
        replicas.stop()
    return results


async def stack_floor(
    infra: Infrastructure, reports: Reports, seconds: float, log_dir: Path
) -> dict[str, Any]:
    """The bare stack (`bench.stack_floor`) flat out, one process, the same load generator: the
    most reports/s one process of FastAPI, uvicorn and asyncpg takes on these cores, and the CPU
    it and PostgreSQL spend per report."""
    async with bench_process(
        "bench.stack_floor",
        log_dir / "stack-floor.log",
        *("--database-url", infra.database_url),
        within=60,
    ) as (port, process):
        floor = psutil.Process(process.pid)

        def used() -> dict[str, float]:
            times = floor.cpu_times()
            return {"stack": times.user + times.system} | infrastructure_cpu(infra)

        async with intake_client(f"http://127.0.0.1:{port}") as client:
            await at_fixed_rate(client, reports, 20, 2)  # connections, the pool
            return await intake_flat_out([client], reports, seconds, used, {})


def intake_client(base_url: str) -> Client:
    return Client(base_url, CONNECTIONS, POST_TIMEOUT_SECONDS)


async def intake_flat_out(
    clients: Sequence[Client],
    reports: Reports,
    seconds: float,
    used: Callable[[], dict[str, float]],
    idle: dict[str, float],
    speed: Path | None = None,
) -> dict[str, Any]:
    """One closed-loop run over `clients` (one per intake process): reports/s and the CPU each
    process spent per report, less what it spends idle (and the machine's speed meanwhile,
    given `bench.machine_speed`'s samples)."""
    before = used()
    began = time.monotonic()
    run = await flat_out(clients, reports, seconds, CONNECTIONS)
    ended = time.monotonic()
    after = used()
    result = {
        "processes": len(clients),
        "seconds": round(run.seconds, 2),
        "accepted": len(run.accepted),
        "refused": run.refused,
        "reports_per_second": round(len(run.accepted) / run.seconds, 1),
        "cpu_ms_per_report": cpu_ms_per_incident(
            before, after, idle, run.seconds, len(run.accepted)
        ),
    }
    if speed is not None:
        result["machine_unit_us"] = machine_unit_us(speed, began, ended)
    print(json.dumps(result), flush=True)
    return result


async def intake_only(
    work: Path, seconds: float, runs: int, profile: str | None, profile_format: str
) -> dict[str, Any]:
    """PostgreSQL, the broker and one intake process, nothing else: intake flat out `runs`
    times (the machine may be busy: compare CPU per report, and repeat), then the bare stack
    once (`bench.stack_floor`), intake stopped."""
    work.mkdir(mode=0o755, parents=True, exist_ok=True)
    settings = Settings(database_url=None, kafka_bootstrap_servers=None)
    private_key, _ = ensure_dev_keys(work / "auth")
    reports = Reports(private_key.read_bytes(), Settings())
    results = []
    async with (
        infrastructure(settings, work, fresh=True) as infra,
        sink_process(work / "logs") as collector,
        machine_speed_probe(work / "logs") as speed,
    ):
        # Nobody consumes what intake publishes: no alert is sent, the address is never called.
        environment = service_environment(
            work, infra, "http://127.0.0.1:9/alerts", collector.collector
        )
        processes = ServiceProcesses(environment, {"intake": free_port()}, work / "logs")
        try:
            await apply_schemas(infra, ["intake"])
            await processes.start(120)
            async with intake_client(processes.url("intake")) as intake:
                await at_fixed_rate(intake, reports, 20, 3)  # connections, caches, the relay
                idle = await idle_cpu(processes, infra, 5.0)
                print(
                    json.dumps({"idle_cpu_ms_per_second": {k: v * 1000 for k, v in idle.items()}})
                )
                for n in range(1, runs + 1):
                    with (
                        profiled(
                            "intake",
                            processes.processes["intake"].pid,
                            f"alone-{n}",
                            PROFILES,
                            profile_format,
                        )
                        if profile
                        else contextlib.nullcontext()
                    ):
                        results.append(
                            await intake_flat_out(
                                [intake],
                                reports,
                                seconds,
                                lambda: cpu_seconds(processes, infra) | load_generator(),
                                idle,
                                speed,
                            )
                        )
        finally:
            processes.stop()
        floor = await stack_floor(infra, reports, seconds, work / "logs")
    return {"intake_alone": results, "stack_floor": floor}


async def main(
    rates: Sequence[float],
    seconds: float,
    drain: float,
    work: Path,
    profile: str | None = None,
    profile_format: str = "flamegraph",
    load_only: bool = False,
    census: bool = False,
    repeats: int = REPEATS,
) -> dict[str, Any]:
    work.mkdir(mode=0o755, parents=True, exist_ok=True)
    settings = Settings(database_url=None, kafka_bootstrap_servers=None)
    async with infrastructure(settings, work, fresh=True) as infra:
        assert infra.postgres is not None  # started here: no DATABASE_URL is taken
        floor = {
            "postgres_commit": await postgres_commit_floor(infra.database_url),
            "kafka_round_trip": await kafka_round_trip_floor(
                infra.kafka_bootstrap_servers, settings
            ),
        }
        hop = floor["postgres_commit"]["p50_ms"] + floor["kafka_round_trip"]["p50_ms"]
        floor["three_hops_p50_ms"] = round(3 * hop, 2)
        print(json.dumps(floor), flush=True)
        if census:
            await log_every_statement(infra.database_url)
        results = await system_runs(
            work,
            infra,
            rates,
            seconds,
            drain,
            profile,
            profile_format,
            load_only,
            infra.postgres.data_dir / "server.log" if census else None,
            repeats,
        )
    kafka = {
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "idle_fetch_interval_ms": settings.kafka_idle_fetch_interval_ms,
    }
    return {"floor": floor, "kafka": kafka, **results}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each load run")
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 50, 85])
    parser.add_argument(
        "--drain", type=float, default=180.0, help="longest wait for a run's last first alert"
    )
    parser.add_argument(
        "--profile",
        choices=SERVICE_NAMES,
        help="record a py-spy flame graph of this service during each load run (.local/profiles)",
    )
    parser.add_argument(
        "--profile-format",
        choices=PROFILE_SUFFIXES,
        default="flamegraph",
        help="py-spy's output: flamegraph (svg), raw (collapsed stacks, one a line), speedscope",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=REPEATS,
        help=f"how many times the run at {REPEATED_RATE:g}/s and intake alone as one process "
        "are measured (the machine's swing moves their CPU most)",
    )


def run() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    arguments(parser)
    parser.add_argument(
        "--intake-only",
        action="store_true",
        help="PostgreSQL, the broker and one intake process only: intake flat out, --runs times",
    )
    parser.add_argument("--runs", type=int, default=3, help="with --intake-only: how many runs")
    parser.add_argument(
        "--load-only",
        action="store_true",
        help="the load runs only (idle, the rates, flat out, peak RSS): a quick look between "
        "changes, without the edge, intake alone and the bare stack",
    )
    parser.add_argument(
        "--census",
        action="store_true",
        help="PostgreSQL logs every statement, and each load run counts its statements an "
        "incident by service, and reads back the write-ahead log it made: records by kind and "
        "by relation (the logging costs CPU: not for the other figures)",
    )
    options = parser.parse_args()
    if options.intake_only and options.profile not in (None, "intake"):
        parser.error("--intake-only runs intake alone: --profile intake, or none")
    if options.intake_only and options.census:
        parser.error("--census counts the load runs' statements: not with --intake-only")
    with tempfile.TemporaryDirectory(prefix="system-bench-") as scratch:
        work = Path(scratch)
        work.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data folder
        results: Any = asyncio.run(
            intake_only(
                work, options.seconds, options.runs, options.profile, options.profile_format
            )
            if options.intake_only
            else main(
                options.rates,
                options.seconds,
                options.drain,
                work,
                options.profile,
                options.profile_format,
                options.load_only,
                options.census,
                options.repeats,
            )
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    run()
