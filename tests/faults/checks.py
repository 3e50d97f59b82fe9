"""After a fault: nothing lost, nothing doubled.

What the system holds is read from its own database (each service's schema) in a few queries,
because the checks cover hundreds of incidents at once; the audit log is also verified through
its API and by the offline verifier against its latest signed checkpoint, and the dead letters
are read from the broker.

- every accepted report has exactly the obligations the rules engine derives from it, plus one
  supervising duty up the ladder for each alert reported unacknowledged;
- every obligation that calls for an alert has one, which was acknowledged by a contact it
  reached, or walked its whole contact list and was reported unacknowledged;
- no contact was sent one alert under two deliveries; a delivery (one `Idempotency-Key`) is sent
  again only after a recorded failure of its previous send (a timeout: the gateway may have
  taken it without answering in time), never after a recorded success and never while a send
  of it is still in flight; where a fault may cut between a gateway's answer and our record (a
  crash, the database away), a repeat after an unrecorded success is allowed too;
- every event any service wrote is published and sits in the audit log exactly once, and the
  log verifies against its latest signed checkpoint;
- the dead-letter topics hold the poison records, each once per consumer that does not read its
  type past, with its reason, and nothing else.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import asyncpg

from services.audit.note import open_checkpoint
from services.audit.verify import Source, verify_log
from services.escalation.rules import Evidence, Situation, Trigger, evaluate, is_met_by, ladder_step
from services.escalation.store import view_of
from shared.events import decode
from shared.events.models import (
    IncidentReported,
    LogCheckpoint,
    NotificationAcknowledged,
    NotificationUnacknowledged,
)
from shared.settings import SERVICE_NAMES
from tests.faults.gateways import SILENT_PARTY_KINDS
from tests.faults.load import LoadRun
from tests.faults.poison import PoisonRecord, dead_letters

# How long the system may show no progress before a drill gives up on it settling; a bigger
# drill (see test_faults) takes longer per step.
SETTLE_TIMEOUT_SECONDS = 60.0 + float(os.environ.get("FAULT_INCIDENTS_PER_RUN", "0")) / 2
# An alert is finished when it was acknowledged or its contact list is walked.
FINISHED = frozenset({"ACKNOWLEDGED", "UNACKNOWLEDGED", "FAILED", "WITHDRAWN"})


@dataclass
class Snapshot:
    """What the system holds about one run's incidents, and what is still on its way."""

    unsettled: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notifications: list[asyncpg.Record] = field(default_factory=list)
    deliveries: list[asyncpg.Record] = field(default_factory=list)
    delivered_attempts: Counter = field(default_factory=Counter)
    # obligation id → its status, for the alerts withdrawn because it was met or waived
    obligation_status: dict[UUID, str] = field(default_factory=dict)
    # delivery id → its recorded attempts, in order
    attempts: dict[UUID, list[asyncpg.Record]] = field(default_factory=dict)
    alerts: int = 0
    obligations: int = 0

    @property
    def settled(self) -> bool:
        return not self.unsettled


@dataclass
class Verdict:
    """What a fault did, for the test to report: repeats of one delivery to its gateway."""

    incidents: int
    obligations: int
    alerts: int
    repeated_sends: int
    seconds_to_settle: float


def _event_of(row: asyncpg.Record) -> Any:
    headers = [(name, str(value).encode()) for name, value in json.loads(row["headers"]).items()]
    return decode(row["topic"], headers, bytes(row["payload"]))


async def snapshot(bench: Any, run: LoadRun) -> Snapshot:
    found = Snapshot()
    ids = [UUID(incident_id) for incident_id in run.incident_ids]
    connection = await asyncpg.connect(bench.infra.database_url)
    try:
        # One snapshot of every schema: an alert read must not be newer than its obligation.
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            await _obligations_and_alerts(connection, bench, ids, found)
            await _published_and_audited(connection, found)
    finally:
        await connection.close()
    if bench.duty_desk.pending_acknowledgements:
        found.unsettled.append(
            f"{bench.duty_desk.pending_acknowledgements} acknowledgements still being sent"
        )
    return found


async def _obligations_and_alerts(
    connection: asyncpg.Connection, bench: Any, ids: list[UUID], found: Snapshot
) -> None:
    reported_rows = await connection.fetch(
        "SELECT topic, headers::text AS headers, payload FROM intake.outbox "
        "WHERE event_type = 'incident.reported' AND key = ANY($1::text[])",
        [str(incident_id) for incident_id in ids],
    )
    reports = {event.data.incident_id: event for event in map(_event_of, reported_rows)}
    if len(reports) != len(ids):
        found.problems.append(f"{len(ids) - len(reports)} accepted reports wrote no event")
    obligations = await connection.fetch(
        "SELECT * FROM escalation.obligations WHERE incident_id = ANY($1::uuid[])", ids
    )
    notifications = await connection.fetch(
        "SELECT id, incident_id, obligation_id, party, status, contacts, delivered_at, "
        "acknowledged_at FROM notification.notifications WHERE incident_id = ANY($1::uuid[])",
        ids,
    )
    found.notifications = list(notifications)
    found.deliveries = list(
        await connection.fetch(
            "SELECT d.id, d.notification_id, d.contact_index, d.status, d.attempts "
            "FROM notification.deliveries d JOIN notification.notifications n "
            "ON n.id = d.notification_id WHERE n.incident_id = ANY($1::uuid[])",
            ids,
        )
    )
    attempts_of: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
    for row in await connection.fetch(
        "SELECT a.delivery_id, a.attempt, a.outcome, a.error, a.latency_ms, a.attempted_at "
        "FROM notification.attempts a JOIN notification.notifications n "
        "ON n.id = a.notification_id WHERE n.incident_id = ANY($1::uuid[]) "
        "ORDER BY a.delivery_id, a.attempted_at",
        ids,
    ):
        attempts_of[row["delivery_id"]].append(row)
    found.attempts = dict(attempts_of)
    found.delivered_attempts = Counter(
        delivery_id
        for delivery_id, rows in attempts_of.items()
        for row in rows
        if row["outcome"] == "DELIVERED"
    )
    # What escalation hears back from notification, per incident in the order it is published
    # (one incident's events share a partition): acknowledgements and alerts given up on.
    answers: dict[UUID, list[Any]] = defaultdict(list)
    for row in await connection.fetch(
        "SELECT topic, headers::text AS headers, payload FROM notification.outbox "
        "WHERE event_type IN ('notification.acknowledged', 'notification.unacknowledged') "
        "AND key = ANY($1::text[]) ORDER BY id",
        [str(incident_id) for incident_id in ids],
    ):
        event = _event_of(row)
        answers[event.data.incident_id].append(event.data)
    unacknowledged = {
        answer.notification_id
        for incident_answers in answers.values()
        for answer in incident_answers
        if isinstance(answer, NotificationUnacknowledged)
    }
    found.obligations, found.alerts = len(obligations), len(notifications)
    found.obligation_status = {row["id"]: row["status"] for row in obligations}

    by_incident: dict[UUID, dict[UUID, asyncpg.Record]] = defaultdict(dict)
    for row in obligations:
        by_incident[row["incident_id"]][row["id"]] = row
    alert_of = {row["obligation_id"]: row for row in notifications}

    missing_obligations: list[str] = []
    for incident_id, reported in reports.items():
        held = by_incident.get(incident_id, {})
        expected = expected_obligations(bench, reported, held, answers[incident_id])
        missing_obligations += [expected[i] for i in expected.keys() - held.keys()]
        extra = held.keys() - expected.keys()
        if extra:
            found.problems.append(
                f"incident {incident_id} has obligations the rules do not derive: "
                f"{[(held[i]['rule_id'], held[i]['party'], held[i]['action']) for i in extra]}"
            )
    if missing_obligations:
        found.unsettled.append(
            f"{len(missing_obligations)} obligations not there yet: {missing_obligations[:5]}"
        )

    notified = [row for row in obligations if row["notify"]]
    without_alert = [row for row in notified if row["id"] not in alert_of]
    if without_alert:
        found.unsettled.append(f"{len(without_alert)} obligations not alerted yet")
    open_alerts = [row for row in notifications if row["status"] not in FINISHED]
    if open_alerts:
        found.unsettled.append(f"{len(open_alerts)} alerts still walking their contacts")
    sending = [row for row in found.deliveries if row["status"] in ("PENDING", "SENDING")]
    if sending:
        found.unsettled.append(f"{len(sending)} deliveries still due")
    notified_ids = {row["id"] for row in notified}
    for row in notifications:
        if row["obligation_id"] not in notified_ids:
            obligation = next((o for o in obligations if o["id"] == row["obligation_id"]), None)
            found.problems.append(
                f"alert {row['id']} to {row['party']} is for no obligation that asks for one: "
                f"{dict(obligation) if obligation is not None else row['obligation_id']}"
            )
        if row["status"] == "UNACKNOWLEDGED" and row["id"] not in unacknowledged:
            found.problems.append(f"alert {row['id']} gave up without reporting it")


def expected_obligations(
    bench: Any, reported: Any, held: dict[UUID, asyncpg.Record], answers: list[Any]
) -> dict[UUID, str]:
    """The obligation ids (with what each is) the rules derive from the report, and the
    supervising duties the answers to its alerts call for, replayed in the order escalation
    receives them: an alert given up on while its duty is pending moves the duty one step up
    the ladder; an acknowledgement meets a duty it can meet, and its supervisors stand down."""
    report: IncidentReported = reported.data
    situation = Situation(
        incident_id=report.incident_id,
        facts=report.facts,
        reporter_party=report.reporter.party,
        reported_at=report.reported_at,
    )
    decision = evaluate(
        bench.policy,
        situation,
        Trigger("reported", report.reported_at, reported.id, report.reporter.party),
        bench.party_names,
    )
    expected = {
        spec.id: f"{spec.rule_id} {spec.party} {spec.action}" for spec in decision.obligations
    }
    pending = set(expected)
    supervised_by: dict[UUID, UUID] = {}
    for answer in answers:
        obligation = held.get(answer.obligation_id)
        if answer.obligation_id not in pending or obligation is None:
            continue
        if isinstance(answer, NotificationAcknowledged):
            duty = SimpleNamespace(**dict(obligation))
            township = report.facts.township_code
            if is_met_by(bench.policy, duty, Evidence("ack", party=answer.party), township):
                pending.discard(answer.obligation_id)
                pending.discard(supervised_by.get(answer.obligation_id))
            continue
        # The supervising duty's id depends only on the duty it supervises, not on when.
        supervisor = ladder_step(
            bench.policy,
            view_of(SimpleNamespace(**dict(obligation)), report.facts.township_code),
            "unacknowledged",
            report.reported_at,
            bench.party_names,
        )
        if supervisor is not None and supervisor.id not in expected:
            expected[supervisor.id] = f"{supervisor.party} supervises {expected[obligation['id']]}"
            pending.add(supervisor.id)
            supervised_by[answer.obligation_id] = supervisor.id
    return expected


OUTBOX_EVENTS = " UNION ALL ".join(
    f"SELECT '{service}' AS service, headers->>'ce_source' AS source, event_id, published_at "
    f"FROM {service}.outbox"
    for service in SERVICE_NAMES
)


async def _published_and_audited(connection: asyncpg.Connection, found: Snapshot) -> None:
    """Over the whole system, not only this run: every event written is published and
    in the audit log; the log holds no event twice."""
    unpublished = await connection.fetch(
        f"SELECT service, count(*) AS n FROM ({OUTBOX_EVENTS}) o "
        "WHERE published_at IS NULL GROUP BY service"
    )
    if unpublished:
        found.unsettled.append(
            "events not published yet: "
            + ", ".join(f"{r['service']} {r['n']}" for r in unpublished)
        )
    not_logged = await connection.fetchval(
        f"SELECT count(*) FROM ({OUTBOX_EVENTS}) o WHERE NOT EXISTS ("
        "SELECT 1 FROM audit.log_entries l WHERE l.ce_source = o.source AND l.ce_id = o.event_id)"
    )
    if not_logged:
        found.unsettled.append(f"{not_logged} published events not in the audit log yet")
    twice = await connection.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM audit.log_entries "
        "GROUP BY ce_source, ce_id HAVING count(*) > 1) d"
    )
    if twice:
        found.problems.append(f"{twice} events are in the audit log more than once")
    strangers = await connection.fetchval(
        f"SELECT count(*) FROM audit.log_entries l WHERE NOT EXISTS ("
        f"SELECT 1 FROM ({OUTBOX_EVENTS}) o WHERE o.source = l.ce_source AND o.event_id = l.ce_id)"
    )
    if strangers:
        found.problems.append(f"{strangers} audit entries are events no service wrote")


async def settle(bench: Any, run: LoadRun, timeout: float = SETTLE_TIMEOUT_SECONDS) -> Snapshot:
    """The snapshot once nothing is on its way any more; fails with what still was once nothing
    moved for `timeout` seconds. A busy machine drains more slowly, not differently: waiting is
    bounded by the lack of progress, not by the machine's speed (and, against a system going
    round in circles, by ten times `timeout` in all)."""
    started = time.monotonic()
    last_progress, last_unsettled = started, None
    while True:
        found = await snapshot(bench, run)
        if found.problems:
            raise AssertionError("\n".join(found.problems))
        if found.settled:
            return found
        now = time.monotonic()
        if found.unsettled != last_unsettled:
            last_progress, last_unsettled = now, found.unsettled
        if now - last_progress > timeout or now - started > 10 * timeout:
            raise AssertionError(
                f"not settled after {now - started:.0f}s, {now - last_progress:.0f}s without "
                f"progress: {found.unsettled}\n{logs_end(bench)}"
            )
        await asyncio.sleep(0.5)


def logs_end(bench: Any, lines: int = 30) -> str:
    """What each service logged last: why something stopped moving is usually there."""
    return "\n".join(
        f"{service}'s log ends:\n{bench.processes.log_tail(service, lines)}"
        for service in SERVICE_NAMES
    )


def check_deliveries(bench: Any, run: LoadRun, found: Snapshot, repeats_allowed: bool) -> int:
    """Alerts reached their contacts once each; returns how many raw repeats gateways saw."""
    incidents = set(run.incident_ids)
    gateways = (bench.primary, bench.duty_desk)
    problems: list[str] = []
    # An alert withdrawn before its walk started has no contact list.
    contacts_of = {row["id"]: json.loads(row["contacts"] or "[]") for row in found.notifications}
    deliveries_of: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
    for row in found.deliveries:
        deliveries_of[row["notification_id"]].append(row)
    for alert in found.notifications:
        opened = deliveries_of[alert["id"]]
        reached = [row for row in opened if row["status"] == "DELIVERED"]
        silent = alert["party"].startswith(SILENT_PARTY_KINDS)
        if alert["status"] == "ACKNOWLEDGED":
            if silent or not reached or alert["delivered_at"] is None:
                problems.append(f"alert {alert['id']} acknowledged, yet reached nobody who acks")
        elif alert["status"] == "UNACKNOWLEDGED":
            if len(opened) != len(contacts_of[alert["id"]]) or not reached:
                problems.append(f"alert {alert['id']} gave up before walking its contacts")
        elif alert["status"] == "WITHDRAWN":
            # Stopped because its duty was done or no longer required meanwhile.
            outcome = found.obligation_status.get(alert["obligation_id"])
            if outcome not in ("MET", "MET_LATE", "WAIVED"):
                problems.append(f"alert {alert['id']} withdrawn while its duty is {outcome}")
        else:
            problems.append(f"alert {alert['id']} to {alert['party']} ended {alert['status']}")

    # What the gateways saw: one key per (alert, contact), and every delivery we recorded.
    keys_per_contact: dict[tuple[str, int], set[str]] = defaultdict(set)
    posts_per_key: Counter = Counter()
    for index, gateway in enumerate(gateways):
        for key, posts in gateway.posts_by_key().items():
            if posts[0].incident_id not in incidents:
                continue
            for post in posts:
                if post.contact_index != index:
                    problems.append(f"delivery {key} reached gateway {index}, not its contact")
                keys_per_contact[(post.notification_id, post.contact_index)].add(key)
            posts_per_key[key] += len(posts)
    for (notification_id, index), keys in keys_per_contact.items():
        if len(keys) > 1:
            problems.append(f"alert {notification_id} sent to contact {index} as {len(keys)}")
    for row in found.deliveries:
        if row["status"] != "DELIVERED":
            continue
        keys = keys_per_contact.get((str(row["notification_id"]), row["contact_index"]), set())
        if str(row["id"]) not in keys:
            problems.append(f"delivery {row['id']} recorded as delivered, the gateway has none")
        if found.delivered_attempts[row["id"]] != 1 and not repeats_allowed:
            problems.append(
                f"delivery {row['id']} delivered {found.delivered_attempts[row['id']]} times"
            )
    repeats = sum(count - 1 for count in posts_per_key.values())
    if not repeats_allowed:
        for row in found.deliveries:
            problems += resend_problems(
                row["id"], found.attempts.get(row["id"], []), posts_per_key[str(row["id"])]
            )
    assert not problems, "\n".join(problems[:20])
    return repeats


# Attempts that never reached out to the gateway: the dispatcher held them back itself.
NOT_SENT = ("circuit open", "no channel")
# Two attempts are in flight together when one starts before the other is recorded; the two
# clocks behind that (the send's and the record's) agree to well within this.
CLOCK_SLACK_SECONDS = 0.01


def resend_problems(delivery_id: UUID, attempts: list[asyncpg.Record], posts: int) -> list[str]:
    """Where nothing cut between a gateway's answer and our record, a delivery is sent again
    only after a recorded failure of its previous send: never after a recorded success, never
    while that send is in flight, and never without an attempt of its own on record."""
    problems: list[str] = []
    outcomes = [attempt["outcome"] for attempt in attempts]
    if "DELIVERED" in outcomes[:-1]:
        problems.append(f"delivery {delivery_id} sent again after a recorded success: {outcomes}")
    for earlier, later in itertools.pairwise(attempts):
        started = later["attempted_at"].timestamp() - later["latency_ms"] / 1000
        if started < earlier["attempted_at"].timestamp() - CLOCK_SLACK_SECONDS:
            problems.append(
                f"delivery {delivery_id}: attempt {later['attempt']} was sent while attempt "
                f"{earlier['attempt']} was still in flight"
            )
    sent = [a for a in attempts if not (a["error"] or "").startswith(NOT_SENT)]
    if posts > len(sent):
        problems.append(
            f"delivery {delivery_id} reached its gateway {posts} times, "
            f"with {len(sent)} sends on record"
        )
    return problems


async def check_audit_log(bench: Any, settled_size: int) -> None:
    """The log verifies, through the service and offline, against a signed checkpoint that
    covers every event of the run."""
    audit = bench.clients["audit"]

    async def covering_checkpoint() -> str:
        deadline = time.monotonic() + 30
        while True:
            note = (await audit.get("/v1/log/checkpoint")).text
            checkpoint, _ = open_checkpoint(note, bench.log_key)
            if checkpoint.size >= settled_size:
                return note
            if time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint covers {settled_size} leaves")
            await asyncio.sleep(0.5)

    note = await covering_checkpoint()
    checkpoint, _ = open_checkpoint(note, bench.log_key)
    verified = (await audit.get("/v1/log/verify")).json()
    assert verified["checkpoint_matches"] is True, verified
    assert verified["first_broken_index"] is None, verified
    ok, message = await verify_log(
        Source(database_url=bench.infra.database_url), checkpoint, bench.log_key
    )
    assert ok, message


async def check_dead_letters(
    bench: Any, poison: list[PoisonRecord], just_sent: list[PoisonRecord]
) -> None:
    """The dead-letter topics hold poison only; what was just sent, once per consumer that
    does not read its type past (a type a consumer ignores is told by its header, and the
    rest of the record is never read: audit, which ignores none, dead-letters every one)."""
    wanted = {
        (record.position, group)
        for record in just_sent
        for group in bench.consumers_of[record.position[0]]
        if record.ce_type not in bench.ignored_by[group]
    }
    known = {record.position for record in poison}
    deadline = time.monotonic() + 30
    while True:
        letters = await dead_letters(bench.infra.kafka_bootstrap_servers)
        seen = Counter((letter.original, letter.consumer) for letter in letters)
        if wanted <= seen.keys() or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert wanted <= seen.keys(), f"not dead-lettered: {sorted(wanted - seen.keys())}"
    strangers = [letter for letter in letters if letter.original not in known]
    assert not strangers, f"events of the system were dead-lettered: {strangers[:5]}"
    twice = [key for key in wanted if seen[key] != 1]
    assert not twice, f"dead-lettered more than once: {twice}"
    assert all(letter.reason for letter in letters), "a dead letter without its reason"


async def verify_nothing_lost_nothing_doubled(
    bench: Any,
    run: LoadRun,
    *,
    repeats_allowed: bool = False,
    poison_just_sent: Sequence[PoisonRecord] = (),
) -> Verdict:
    started = time.monotonic()
    found = await settle(bench, run)
    seconds = time.monotonic() - started
    connection = await asyncpg.connect(bench.infra.database_url)
    try:
        # A checkpoint's own leaf waits for the next checkpoint some real event calls for.
        settled_size = await connection.fetchval(
            "SELECT coalesce(max(index) + 1, 0) FROM audit.log_entries WHERE ce_type <> $1",
            LogCheckpoint.ce_type,
        )
    finally:
        await connection.close()
    repeats = check_deliveries(bench, run, found, repeats_allowed)
    await check_audit_log(bench, settled_size)
    await check_dead_letters(bench, bench.poison, list(poison_just_sent))
    return Verdict(len(run.incident_ids), found.obligations, found.alerts, repeats, seconds)
