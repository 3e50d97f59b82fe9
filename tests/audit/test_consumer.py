"""Audit's consumer takes the log as its inbox: an event the log holds is a duplicate, whether it
comes again in the same batch, in a batch sent again, or alone after its batch failed; no inbox
row is written for it (real PostgreSQL of the audit test system; the records handed over as the
broker would give them)."""

from __future__ import annotations

import dataclasses
import itertools
from uuid import UUID

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from services.audit.datakeys import DataKeys, load_key_encryption_key
from services.audit.handlers import CONSUMER, AuditLog, BatchingConsumer
from services.audit.models import messaging
from shared import kafka
from shared.db import create_engine, create_session_factory
from shared.events import CloudEvent, topics
from shared.kafka import EventConsumer
from shared.messaging import Inbox
from shared.settings import Settings
from tests.audit.conftest import AuditSystem
from tests.fuzz.harness import Record
from tests.integration.helpers import status_changed
from tests.support import CapturingProducer, fetch_rows

OFFSETS = itertools.count(2_000_000)


def record_of(event: CloudEvent) -> Record:
    return Record(topics.ESCALATIONS, 0, next(OFFSETS), event.key, event.value(), event.headers())


async def leaves_of(settings: Settings, *events: CloudEvent) -> dict[UUID, int]:
    rows = await fetch_rows(
        settings,
        "SELECT ce_id, count(*) AS leaves FROM audit.log_entries WHERE ce_id = ANY($1)"
        " GROUP BY ce_id",
        [event.id for event in events],
    )
    return {row["ce_id"]: row["leaves"] for row in rows}


def batching_consumer(settings: Settings, engine: AsyncEngine) -> BatchingConsumer:
    """Audit's consumer of escalations.v1 on `engine`, as the service builds it."""
    audit_log = AuditLog(DataKeys(load_key_encryption_key(settings)))
    return BatchingConsumer(
        audit_log,
        CONSUMER,
        (topics.ESCALATIONS,),
        audit_log.table,
        create_session_factory(engine),
        Inbox(messaging.inbox_table, CONSUMER),
        CapturingProducer(),
        settings,
    )


async def test_the_log_is_the_consumer_s_inbox(audit_system: AuditSystem) -> None:
    # The key-encryption key the running audit uses (its development key, as no other is
    # set): its findings open what this consumer seals.
    settings = Settings(database_url=audit_system.infra.database_url)
    engine = create_engine(settings, pool_size=2)
    consumer = batching_consumer(settings, engine)
    outcomes: list[str] = []
    consumer._count = lambda _topic, outcome: outcomes.append(outcome)  # type: ignore[method-assign]
    first, second, alone = (status_changed("audit consumer test") for _ in range(3))
    batch = [record_of(first), record_of(first), record_of(second)]  # one sent twice
    try:
        await consumer._apply_batch(batch)  # type: ignore[arg-type]
        assert outcomes == ["applied", "redelivered", "applied"]

        # The whole batch again, as after a crash before its offsets were committed.
        outcomes.clear()
        await consumer._apply_batch(batch)  # type: ignore[arg-type]
        assert outcomes == ["redelivered"] * 3

        # A record alone, as after its batch failed: applied once, then a duplicate.
        assert await consumer.process(record_of(alone)) == "applied"  # type: ignore[arg-type]
        assert await consumer.process(record_of(alone)) == "duplicate"  # type: ignore[arg-type]
        assert await consumer.process(batch[0]) == "duplicate"  # type: ignore[arg-type]
    finally:
        await engine.dispose()

    assert await leaves_of(settings, first, second, alone) == {
        first.id: 1,
        second.id: 1,
        alone.id: 1,
    }
    inbox_rows = await fetch_rows(
        settings,
        "SELECT ce_id FROM audit.inbox WHERE ce_id = ANY($1)",
        [first.id, second.id, alone.id],
    )
    assert inbox_rows == []


async def test_an_event_appended_marks_its_place_in_its_trace_only_where_the_trace_is_kept(
    audit_system: AuditSystem, monkeypatch
) -> None:
    """A batch's events are appended together; each one of a kept trace gets its marker span
    there, and one of a trace the sampler dropped (most of a flood's) or of none gets none."""
    finished = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(finished))
    monkeypatch.setattr(kafka, "tracer", provider.get_tracer("test"))
    settings = Settings(database_url=audit_system.infra.database_url)
    engine = create_engine(settings, pool_size=2)
    consumer = batching_consumer(settings, engine)
    kept_trace, dropped_trace = (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "0af7651916cd43dd8448eb211c80319c",
    )
    kept, dropped, untraced = (
        dataclasses.replace(status_changed("audit marker test"), trace_headers=headers)
        for headers in (
            {"traceparent": f"00-{kept_trace}-00f067aa0ba902b7-01"},
            {"traceparent": f"00-{dropped_trace}-00f067aa0ba902b7-00"},
            {},
        )
    )
    try:
        await consumer._apply_batch([record_of(kept), record_of(dropped), record_of(untraced)])  # type: ignore[arg-type]
    finally:
        await engine.dispose()
        provider.shutdown()
    assert await leaves_of(settings, kept, dropped, untraced) == {
        kept.id: 1,
        dropped.id: 1,
        untraced.id: 1,
    }
    markers = finished.get_finished_spans()
    assert [(span.name, f"{span.context.trace_id:032x}") for span in markers] == [
        (f"{topics.ESCALATIONS} process", kept_trace)
    ]
    assert markers[0].attributes["messaging.message.id"] == str(kept.id)


def test_audit_s_batches_are_of_its_own_size_where_other_consumers_take_the_shared_one() -> None:
    settings = Settings(kafka_batch_max_records=7, audit_batch_max_records=11)
    audit_log = AuditLog(DataKeys(load_key_encryption_key(settings)))
    arguments = (
        (topics.ESCALATIONS,),
        audit_log.table,
        async_sessionmaker(),
        Inbox(messaging.inbox_table, CONSUMER),
        CapturingProducer(),
        settings,
    )
    assert BatchingConsumer(audit_log, CONSUMER, *arguments).batch_max_records == 11
    assert EventConsumer(CONSUMER, *arguments).batch_max_records == 7
