"""Work picked up for an incident in a trace of another request (shared/telemetry.py
`in_trace_of`): it joins the incident's trace and links the request."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry


def test_work_done_for_a_request_of_another_trace_joins_the_incident_and_links_the_request(
    monkeypatch,
):
    """An acknowledgement link followed starts a trace of its own; what it does to the alert
    is a span of the alert's (the incident's) trace, linking the request's span."""
    finished = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(finished))
    tracer = provider.get_tracer("test")
    monkeypatch.setattr(telemetry, "tracer", tracer)
    with tracer.start_as_current_span("escalations.v1 process"):
        alert_context = telemetry.current_trace_headers()
    with tracer.start_as_current_span("POST /v1/notifications/{id}/ack") as request:
        with telemetry.in_trace_of(alert_context, "notification acknowledged"):
            pass
        with telemetry.in_trace_of(telemetry.current_trace_headers(), "same trace"):
            pass
    spans = {span.name: span for span in finished.get_finished_spans()}
    acknowledged = spans["notification acknowledged"]
    routed = spans["escalations.v1 process"]
    assert acknowledged.context.trace_id == routed.context.trace_id
    assert acknowledged.parent.span_id == routed.context.span_id
    assert [link.context.span_id for link in acknowledged.links] == [
        request.get_span_context().span_id
    ]
    assert list(spans["same trace"].links) == []  # nothing to link within one trace
    provider.shutdown()
