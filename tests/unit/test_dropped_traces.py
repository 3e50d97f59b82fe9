"""Work for a trace the sampler dropped makes no span of its own (shared/telemetry.py
`trace_dropped`): the services' samplers follow the parent, so such a span is never recorded.
The trace still goes on as it would through a span: what a consumer sends while it applies an
event, the records a relay publishes and a delivery's requests carry the same trace, dropped.
A kept trace, and an event that carries none, get their spans as before. Nothing connects."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared import kafka, messaging, telemetry
from shared.events import topics
from shared.jsontext import json_text
from shared.kafka import EventConsumer, HandlerTable
from shared.messaging import Inbox, Outbox, OutboxRelay, inbox_table, outbox_table
from shared.settings import Settings
from tests.integration.helpers import status_changed
from tests.support import CapturingProducer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"
KEPT = {"traceparent": f"00-{TRACE}-{UPSTREAM_SPAN}-01"}
DROPPED = {"traceparent": f"00-{TRACE}-{UPSTREAM_SPAN}-00"}


@pytest.fixture
def finished(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The spans recorded by the consumer, the relay and `in_trace_of`, under the SDK's
    default sampler (the parent's decision, as the services' with their reservoir)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for module in (kafka, messaging, telemetry):
        monkeypatch.setattr(module, "tracer", tracer)
    yield exporter
    provider.shutdown()


def traceparent(headers: dict[str, str]) -> tuple[str, str, str]:
    _, trace_id, span_id, flags = headers["traceparent"].split("-")
    return trace_id, span_id, flags


@pytest.mark.parametrize(
    ("headers", "carried", "kept", "dropped"),
    [
        (KEPT, (TRACE, True), TRACE, False),
        (DROPPED, (TRACE, False), None, True),
        ({}, None, None, False),
        ({"traceparent": f"00-{'0' * 32}-{UPSTREAM_SPAN}-01"}, None, None, False),
        ({"traceparent": f"00-{TRACE}-{UPSTREAM_SPAN}-zz"}, None, None, False),
        ({"traceparent": "garbage"}, None, None, False),
    ],
)
def test_what_a_traceparent_says_of_its_trace(
    headers: dict[str, str], carried: tuple[str, bool] | None, kept: str | None, dropped: bool
) -> None:
    assert telemetry.carried_trace(headers) == carried
    assert telemetry.kept_trace_id(headers) == kept
    assert telemetry.trace_dropped(headers) is dropped


def consumer() -> EventConsumer:
    return EventConsumer(
        "test.consumer",
        (topics.ESCALATIONS,),
        HandlerTable({}),
        async_sessionmaker(),
        Inbox(inbox_table(MetaData(schema="test")), "test.consumer"),
        CapturingProducer(),
        Settings(),
    )


def test_a_consumer_applies_an_event_of_a_dropped_trace_in_that_trace_without_a_span(
    finished: InMemorySpanExporter,
) -> None:
    event = status_changed("dropped trace")
    spans: dict[str, tuple[bool, dict[str, str]]] = {}
    for name, headers in (("kept", KEPT), ("dropped", DROPPED), ("none", {})):
        carrying = dataclasses.replace(event, trace_headers=headers)
        with consumer()._span(topics.ESCALATIONS, carrying) as span:
            spans[name] = (span.is_recording(), telemetry.current_trace_headers())
    recorded = finished.get_finished_spans()
    assert len(recorded) == 2  # the kept trace's, and a root for the event that carries none
    kept_span = next(span for span in recorded if f"{span.context.trace_id:032x}" == TRACE)
    assert f"{kept_span.parent.span_id:016x}" == UPSTREAM_SPAN
    assert spans["kept"][0] and spans["none"][0]

    recording, sent = spans["dropped"]
    assert not recording
    # What the handler sends goes on in the same trace, still dropped, under the upstream span.
    assert traceparent(sent) == (TRACE, UPSTREAM_SPAN, "00")
    assert traceparent(spans["kept"][1])[::2] == (TRACE, "01")


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, topic: str, **record: Any) -> asyncio.Future[Any]:
        self.sent.append({"topic": topic, **record})
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_a_relay_publishes_a_row_of_a_dropped_trace_with_its_headers_as_written(
    finished: InMemorySpanExporter,
) -> None:
    producer = RecordingProducer()
    relay = OutboxRelay(
        Outbox(outbox_table(MetaData(schema="test"))),
        async_sessionmaker(),
        producer,  # type: ignore[arg-type]
        "postgresql://nowhere/none",
    )
    for headers in (DROPPED, KEPT):
        row = {
            "headers": json_text({**headers, "ce_id": "e1"}),
            "topic": topics.ESCALATIONS,
            "key": "incident-1",
            "payload": b"{}",
        }
        await relay._send(row)  # type: ignore[arg-type]
    dropped, kept = (dict(record["headers"]) for record in producer.sent)
    assert dropped == {"traceparent": DROPPED["traceparent"].encode(), "ce_id": b"e1"}
    [publish] = finished.get_finished_spans()
    assert publish.name == f"{topics.ESCALATIONS} publish"
    assert f"{publish.parent.span_id:016x}" == UPSTREAM_SPAN
    assert traceparent({"traceparent": kept["traceparent"].decode()}) == (
        TRACE,
        f"{publish.context.span_id:016x}",
        "01",
    )


def test_work_picked_up_for_a_dropped_trace_stays_in_it_without_a_span(
    finished: InMemorySpanExporter,
) -> None:
    with telemetry.in_trace_of(DROPPED, "notification send", party="X") as span:
        assert not span.is_recording()
        assert traceparent(telemetry.current_trace_headers()) == (TRACE, UPSTREAM_SPAN, "00")
    with telemetry.in_trace_of(KEPT, "notification send", party="X"):
        pass
    [send] = finished.get_finished_spans()
    assert f"{send.context.trace_id:032x}" == TRACE
    assert dict(send.attributes or {}) == {"party": "X"}
