"""OpenTelemetry set-up: traces exported over OTLP when an endpoint is set, otherwise off."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from shared.settings import Settings


def configure_tracing(settings: Settings, service: str) -> TracerProvider | None:
    """Install a tracer provider when OTLP export is configured; no cost otherwise."""
    if not settings.otel_exporter_otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name or service})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def current_trace_headers() -> dict[str, str]:
    """W3C `traceparent`/`tracestate` of the active span, for an event's headers."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier
