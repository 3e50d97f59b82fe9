"""Inputs fuzzing found a consumer mishandles: each must land (applied, duplicate or dead-lettered)
and today does not, so each is a strict xfail naming the defect. When a fix makes one pass,
remove its mark, and let the strategies of `strategies.py` produce such inputs again.

Where `EventConsumer.process` raises decides how bad it is. Raised by the handler, the run loop
retries the record (a few seconds of backoff for its partition) and then dead-letters it as
"handler failed 5 times". Raised while decoding or dead-lettering, it never gives up: the
partition stops for good.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError

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
        marks=xfail(
            f"a record with neither key nor value: the DLQ producer refuses it ({BLOCKS_FOR_GOOD})",
            AssertionError,
        ),
        id="no-key-no-value",
    ),
    pytest.param(
        Input(
            "escalation.incidents",
            lambda: [event(reported(), value=b"[" * 100_000)],
        ),
        marks=xfail(
            f"deeply nested JSON: decode lets RecursionError out ({BLOCKS_FOR_GOOD})",
            RecursionError,
        ),
        id="deeply-nested-json",
    ),
    pytest.param(
        Input("audit.log", lambda: [event(reported(), value=b"x" * (1024 * 1024 - 200))]),
        marks=xfail(
            "a value near 1 MiB: with the dlq_* headers the DLQ record exceeds the producer's "
            f"max_request_size, a transient KafkaError ({BLOCKS_FOR_GOOD})",
            MessageSizeTooLargeError,
        ),
        id="dead-letter-too-large",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: [event(reported(subjects=()))]),
        marks=xfail(
            f"SIGNS with no subjects: an empty insert into subject_signs ({RETRIED})",
            IntegrityError,
        ),
        id="signs-without-subjects",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: [event(reported(township_code=""))]),
        marks=xfail(
            f"empty township_code: party_code raises ValueError ({RETRIED})",
            ValueError,
        ),
        id="empty-township-code",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: [event(reported(township_code="1" * 37))]),
        marks=xfail(
            f"township_code of 37 characters: obligations.party is varchar(40) ({RETRIED})",
            DBAPIError,
        ),
        id="long-township-code",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: follow_up({"weather": "晴"})),
        marks=xfail(
            f"a follow-up whose changes are not facts: IncidentFacts ValidationError ({RETRIED})",
            ValidationError,
        ),
        id="follow-up-unknown-fact",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: follow_up({"category": "FLOOD"})),
        marks=xfail(
            f"a follow-up with an unknown category: IncidentFacts ValidationError ({RETRIED})",
            ValidationError,
        ),
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
        marks=xfail(
            f"reported_at late in year 9999: due times overflow ({RETRIED})", OverflowError
        ),
        id="reported-at-year-9999",
    ),
    pytest.param(
        Input("notification.escalations", lambda: [event(obligation(party="VOL:150626102"))]),
        marks=xfail(
            f"an alert for a party of an unknown kind: party_kind_of raises ValueError ({RETRIED})",
            ValueError,
        ),
        id="party-of-unknown-kind",
    ),
    pytest.param(
        Input("notification.escalations", lambda: [event(obligation(party="DEPT:" + "应" * 36))]),
        marks=xfail(f"a party of 41 characters: varchar(40) ({RETRIED})", DBAPIError),
        id="long-party",
    ),
    pytest.param(
        Input("notification.escalations", lambda: [event(obligation(rule_id="R" * 17))]),
        marks=xfail(f"a rule id of 17 characters: varchar(16) ({RETRIED})", DBAPIError),
        id="long-rule-id",
    ),
    pytest.param(
        Input("intake.status-projection", lambda: [event(obligation(), source="s" * 201)]),
        marks=xfail(
            f"ce_source of 201 characters: inbox.ce_source is varchar(200) ({RETRIED}); the "
            "same in every consumer",
            DBAPIError,
        ),
        id="long-ce-source",
    ),
    pytest.param(
        Input("audit.log", lambda: [event(reported(), subject="x" * 201)]),
        marks=xfail(
            f"ce_subject of 201 characters: log_entries.subject is varchar(200) ({RETRIED})",
            DBAPIError,
        ),
        id="long-ce-subject",
    ),
    pytest.param(
        Input("notification.escalations", lambda: [event(obligation(), source="escalation\0")]),
        marks=xfail(
            f"U+0000 in ce_source: PostgreSQL text refuses it ({RETRIED}); the same in every "
            "consumer, and in audit's ce_subject",
            DBAPIError,
        ),
        id="nul-in-ce-source",
    ),
    pytest.param(
        Input("escalation.incidents", lambda: [event(reported(location="图克镇\0中心街"))]),
        marks=xfail(f"U+0000 in a fact: jsonb refuses it ({RETRIED})", DBAPIError),
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
        marks=xfail(
            f"U+0000 in the incident brief: the alert's jsonb refuses it ({RETRIED})", DBAPIError
        ),
        id="nul-in-alert",
    ),
    pytest.param(
        Input(
            "intake.status-projection",
            lambda: [
                event(
                    IncidentStatusChanged(
                        incident_id=uuid4(),
                        status="RESPONDING",
                        previous_status="REPORTED",
                        changed_at=datetime.now(UTC),
                        reason="incident.action_recorded\0",
                    ),
                    source="escalation",
                )
            ],
        ),
        marks=xfail(f"U+0000 in a status reason: text refuses it ({RETRIED})", DBAPIError),
        id="nul-in-status-reason",
    ),
    pytest.param(
        Input("audit.log", nan_latency),
        marks=xfail(
            f"NaN in the data: audit's canonical JSON refuses it ({RETRIED})",
            ValueError,
        ),
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
