"""Inputs fuzzing found consumers once mishandled, kept as regression cases: each must land
(applied, duplicate, ignored or dead-lettered) without `EventConsumer.process` raising.

They were: records with neither key nor value, JSON nested too deep or carrying NaN, values too
large to dead-letter with their headers (all of which stopped a partition for good), and data a
handler cannot store (too long for a column, NUL characters, overflowing times, facts that are
not facts), which used to be retried five times before being dead-lettered and now go to the
DLQ at once with the handler's reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from shared.events import CloudEvent
from shared.events.models import (
    EventData,
    IncidentBrief,
    IncidentFacts,
    IncidentReported,
    IncidentStatusChanged,
    NotificationDelivered,
    ObligationCreated,
    Reporter,
    ReportFiled,
    Subject,
)
from shared.events.registry import topic_of
from tests.fuzz.conftest import FuzzBench


def facts(**changes: Any) -> IncidentFacts:
    return IncidentFacts(
        **{
            "category": "VIOLENCE",
            "phase": "SIGNS",
            "township_code": "150626102",
            "township_name": "图克镇",
            "subjects": (Subject(id="SQJZ-2024-0107", name="王某某"),),
            **changes,
        }
    )


def reported(**changes: Any) -> IncidentReported:
    return IncidentReported(
        incident_id=uuid4(),
        facts=facts(**changes),
        reporter=Reporter(party="SFS:150626102", name="李明"),
        reported_at=datetime.now(UTC),
    )


def obligation(**changes: Any) -> ObligationCreated:
    return ObligationCreated(
        **{
            "incident_id": uuid4(),
            "obligation_id": uuid4(),
            "party": "BLO",
            "action": "REPORT",
            "action_text": "向旗局报告",
            "deadline_name": "PROMPT",
            "due_at": datetime.now(UTC),
            "rule_id": "R5",
            "plan_section": "四(二)",
            "explanation": "依据 R5",
            "notify": True,
            "incident": IncidentBrief(
                category="VIOLENCE",
                phase="SIGNS",
                township_code="150626102",
                township_name="图克镇",
            ),
            **changes,
        }
    )


def delivered() -> NotificationDelivered:
    return NotificationDelivered(
        notification_id=uuid4(),
        incident_id=uuid4(),
        obligation_id=uuid4(),
        party="BLO",
        channel="webhook",
        contact="https://duty.example/alerts",
        attempt=1,
        outcome="DELIVERED",
        latency_ms=12.5,
        attempted_at=datetime.now(UTC),
    )


# (topic, value, headers, key) of one record
Parts = tuple[str, bytes | None, list[tuple[str, bytes | None]], bytes | None]


@dataclass(frozen=True)
class Input:
    """Records to land, in order, on one consumer group; the last is the one that fails."""

    group: str
    # Built when the test runs, so every run has fresh ids.
    records: Callable[[], list[Parts]]


def event(
    data: EventData,
    *,
    source: str = "intake",
    subject: str | None = None,
    value: bytes | None = None,
) -> Parts:
    """An event as a record: (topic, value, headers, key)."""
    incident = getattr(data, "incident_id", None)
    built = CloudEvent.new(source, data, subject or str(incident or uuid4()), trace_headers={})
    return (
        topic_of(data),
        built.value() if value is None else value,
        list(built.headers()),
        built.key,
    )


def follow_up(changes: dict[str, Any]) -> list[Parts]:
    first = reported(phase="OCCURRED")
    correction = ReportFiled(
        incident_id=first.incident_id,
        report_id=uuid4(),
        kind="CORRECTION",
        reporter=Reporter(party="SFS:150626102", name="李明"),
        filed_at=datetime.now(UTC),
        changes=changes,
    )
    return [event(first), event(correction)]


def status_changed(reason: str) -> IncidentStatusChanged:
    return IncidentStatusChanged(
        incident_id=uuid4(),
        status="RESPONDING",
        previous_status="REPORTED",
        changed_at=datetime.now(UTC),
        reason=reason,
    )


def nan_latency() -> list[Parts]:
    data = delivered()
    # Python's json reads NaN, so decoding accepts it; RFC 8259 JSON has no such token.
    value = json.dumps({**data.model_dump(mode="json"), "latency_ms": float("nan")}).encode()
    return [event(data, source="notification", value=value)]


def xfail(reason: str, raises: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
    return pytest.mark.xfail(strict=True, reason=reason, raises=raises)


BLOCKS_FOR_GOOD = "blocks its partition for good"
RETRIED = "retried, then dead-lettered as 'handler failed 5 times'"

CASES = [
    pytest.param(
        Input("audit.log", lambda: [("incidents.v1", None, [], None)]),
        id="no-key-no-value",
    ),
    pytest.param(
        Input(
            "escalation.incidents",
            lambda: [event(reported(), value=b"[" * 100_000)],
        ),
        id="deeply-nested-json",
    ),
    pytest.param(
        Input("audit.log", lambda: [event(reported(), value=b"x" * (1024 * 1024 - 200))]),
        id="dead-letter-too-large",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: [event(reported(subjects=()))]),
        id="signs-without-subjects",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: [event(reported(township_code=""))]),
        id="empty-township-code",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: [event(reported(township_code="1" * 37))]),
        id="long-township-code",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: follow_up({"weather": "晴"})),
        id="follow-up-unknown-fact",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: follow_up({"category": "FLOOD"})),
        id="follow-up-bad-value",
    ),
    pytest.param(
        Input(
            "escalation.incidents",
            lambda: [
                event(
                    IncidentReported(
                        **{
                            **reported().model_dump(),
                            "reported_at": datetime(9999, 12, 31, 23, 50, tzinfo=UTC),
                        }
                    )
                )
            ],
        ),
        id="reported-at-year-9999",
    ),
    pytest.param(
        Input("notification.escalations", lambda: [event(obligation(party="VOL:150626102"))]),
        id="party-of-unknown-kind",
    ),
    pytest.param(
        Input("notification.escalations", lambda: [event(obligation(party="DEPT:" + "应" * 36))]),
        id="long-party",
    ),
    pytest.param(
        Input("notification.escalations", lambda: [event(obligation(rule_id="R" * 17))]),
        id="long-rule-id",
    ),
    pytest.param(
        # A type intake handles: one it ignores never reaches its inbox.
        Input(
            "intake.status-projection",
            lambda: [event(status_changed("incident.action_recorded"), source="s" * 201)],
        ),
        id="long-ce-source",
    ),
    pytest.param(
        Input("audit.log", lambda: [event(reported(), subject="x" * 201)]),
        id="long-ce-subject",
    ),
    pytest.param(
        Input("notification.escalations", lambda: [event(obligation(), source="escalation\0")]),
        id="nul-in-ce-source",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: [event(reported(location="图克镇\0中心街"))]),
        id="nul-in-facts",
    ),
    pytest.param(
        Input(
            "notification.escalations",
            lambda: [
                event(
                    obligation(
                        incident=IncidentBrief(
                            category="VIOLENCE",
                            phase="SIGNS",
                            township_code="150626102",
                            township_name="图克镇\0",
                        )
                    )
                )
            ],
        ),
        id="nul-in-alert",
    ),
    pytest.param(
        Input(
            "intake.status-projection",
            lambda: [event(status_changed("incident.action_recorded\0"), source="escalation")],
        ),
        id="nul-in-status-reason",
    ),
    pytest.param(
        Input("audit.log", nan_latency),
        id="nan-in-data",
    ),
]

SERVICE_OF = {
    "intake.status-projection": "intake",
    "escalation.incidents": "escalation",
    "notification.escalations": "notification",
    "audit.log": "audit",
}


@pytest.mark.parametrize("case", CASES)
async def test_every_record_lands(bench: FuzzBench, case: Input) -> None:
    consumer = bench.consumer(SERVICE_OF[case.group], case.group)
    for topic, value, headers, key in case.records():
        await consumer.land(consumer.record(topic, value, headers, key))
    await consumer.settle(bench.dead_letters)
