"""OpenTelemetry: traces over OTLP when an endpoint is set (or to a file, for tests), otherwise
off at no cost. One trace follows an incident from the REST call through every topic."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.limits import TokenBuckets
from shared.observability import ResponseStatus
from shared.settings import Settings

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig

# No server spans for these: health probes, and the console's trace receiver (a span of each
# export received would itself be exported, and so on for ever).
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/traces"})
tracer = trace.get_tracer(__name__)


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line; lets a test read the spans of every process."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock, self._path.open("a", encoding="utf-8") as file:
            file.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class ReservoirFirst(Sampler):
    """The first `per_second` traces begun here each second are kept; beyond them `otherwise`
    decides. A quiet county keeps every incident's trace; at a disaster's rates the traces kept
    stay about as many as a quiet day's, plus `otherwise`'s share (a ratio), and their cost
    stops growing with the load. Decides roots only: under `ParentBased`, a span with a parent
    follows the decision made where its trace began, in every service."""

    def __init__(
        self, per_second: float, otherwise: Sampler, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._reservoir = TokenBuckets(
            rate=per_second, burst=max(1, math.ceil(per_second)), clock=clock, capacity=1
        )
        self._otherwise = otherwise
        # Spans begin on the event loop and in worker threads alike.
        self._lock = threading.Lock()

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        with self._lock:
            kept = self._reservoir.take("roots") == 0.0
        if kept:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return self._otherwise.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return (
            f"ReservoirFirst{{{self._reservoir.rate}/s, then {self._otherwise.get_description()}}}"
        )


def with_reservoir(sampler: Sampler, per_second: float) -> Sampler:
    """`sampler` (the SDK's, from `OTEL_TRACES_SAMPLER`) with the first `per_second` roots of
    each second kept before it decides (`ReservoirFirst`); itself when `per_second` is 0."""
    if per_second <= 0:
        return sampler
    return ParentBased(root=ReservoirFirst(per_second, otherwise=sampler))


def configure_tracing(
    settings: Settings, service: str, exporters: Sequence[SpanExporter] = ()
) -> TracerProvider | None:
    """Install a tracer provider when export is configured (or `exporters` are given: a
    process that keeps its own spans); None (and no cost) otherwise."""
    provider = tracer_provider(settings, service, exporters)
    if provider is not None:
        trace.set_tracer_provider(provider)
    return provider


def tracer_provider(
    settings: Settings, service: str, exporters: Sequence[SpanExporter] = ()
) -> TracerProvider | None:
    """The provider `configure_tracing` installs, or None when nothing would receive spans."""
    if not settings.otel_exporter_otlp_endpoint and not settings.otel_traces_file and not exporters:
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name or service})
    )
    # Before any tracer is made: each takes the provider's sampler as it is then.
    provider.sampler = with_reservoir(provider.sampler, settings.traces_reservoir_per_second)
    provider.add_span_processor(RedactUrls())
    if settings.otel_exporter_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if settings.otel_traces_file:
        # One file per service when the path names `{service}`: no two processes share a file.
        path = Path(str(settings.otel_traces_file).format(service=service))
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


# Span attributes that carry a URL or its query: acknowledgement tokens, robot keys and
# signatures travel in query strings, and no trace may keep them.
URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.query")
REDACTED = "[redacted]"


def without_query(value: str) -> str:
    """The URL or target with its query string replaced: what it says stays out of traces."""
    if "?" not in value:
        return value
    return f"{value.split('?', 1)[0]}?{REDACTED}"


def redact_urls(span: Any) -> None:
    """Overwrite the URL attributes of a span: its query string, whole or in a URL."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for name in URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and value:
            span.set_attribute(name, REDACTED if name == "url.query" else without_query(value))


class RedactUrls(SpanProcessor):
    """Every span's URL attributes redacted as it starts, whichever instrumentation made it
    (FastAPI's server spans, httpx's client spans): they set them when they start the span."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        redact_urls(span)


def untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


def server_telemetry() -> TelemetryConfig:
    """FastAPI's own telemetry, off: the services' server spans are `ServerSpans`', their
    request latency a Prometheus metric of ours (`shared.observability`), their log lines
    ours. FastAPI's made the span's attributes, wrapped `receive` and `send` and looked for
    another instrumentation on every request before the sampler said whether the span was
    kept: 70–130 µs of a report's 530–600 in intake's request path (docs/performance.md)."""
    return {"tracing": False, "metrics": False, "logs": False}


class ServerSpans:
    """A SERVER span for each HTTP request but those of `UNTRACED_PATHS`, the root of its
    trace unless the caller sent one (W3C `traceparent`), named by the route FastAPI chose.
    The sampler is asked first: a request it does not keep carries its trace context on (so
    that every process makes the same choice for the trace) and costs nothing more; a kept
    one gets the attributes of an HTTP server span, and an exception that escapes is
    recorded on it. Plain ASGI, outside the app's other middleware."""

    def __init__(self, app: ASGIApp, tracer_provider: TracerProvider | None = None) -> None:
        self.app = app
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or untraced(scope):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        # The propagators ask for lower-case names, as ASGI gives them.
        parent = extract(
            {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        )
        # The URL's attributes go in at the start: `RedactUrls` sees them there.
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
            "url.path": scope["path"],
        }
        if scope.get("query_string"):
            attributes["url.query"] = scope["query_string"].decode("latin-1")
        span = self._tracer.start_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        token = attach(trace.set_span_in_context(span, parent))
        try:
            if span.is_recording():
                await self._recorded(span, method, scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            detach(token)

    async def _recorded(
        self, span: trace.Span, method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        status = ResponseStatus(send)
        span.set_attribute("network.protocol.version", scope.get("http_version", "1.1"))
        error_type = ""
        try:
            await self.app(scope, receive, status)
        except Exception as error:
            span.record_exception(error)
            error_type = type(error).__qualname__
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            # An exception before the answer is the server error the client is told.
            answered = status.code or 500
            span.set_attribute("http.response.status_code", answered)
            if answered >= 500:
                span.set_attribute("error.type", error_type or str(answered))
                span.set_status(trace.StatusCode.ERROR)
            span.end()


def instrument_http_clients() -> None:
    """Client spans for httpx, only when tracing is on (server spans are FastAPI's:
    `server_telemetry`)."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument()


def current_trace_headers() -> dict[str, str]:
    """W3C `traceparent`/`tracestate` of the active span, for an event's headers."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def carried_trace(trace_headers: Mapping[str, str]) -> tuple[str, bool] | None:
    """The trace id of W3C `traceparent` (`00-<trace id>-<span id>-<flags>`) and whether its
    trace is kept (the flags' sampled bit); None when it carries none that is valid."""
    parts = trace_headers.get("traceparent", "").split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    try:
        sampled = bool(int(parts[3], 16) & 0x01)
    except ValueError:
        return None
    return parts[1], sampled


def kept_trace_id(trace_headers: Mapping[str, str]) -> str | None:
    """The trace id the headers carry, if its trace is kept: a trace the sampler dropped is
    nowhere to link to, and a span of it is never recorded."""
    carried = carried_trace(trace_headers)
    return carried[0] if carried is not None and carried[1] else None


def trace_dropped(trace_headers: Mapping[str, str]) -> bool:
    """Whether the headers carry a trace the sampler dropped: the services' samplers follow
    the parent, so no span of it is ever recorded, and work for it needs none of its own."""
    carried = carried_trace(trace_headers)
    return carried is not None and not carried[1]


def dropped(context: Context | None = None) -> bool:
    """Whether `context` (the current one by default) is of a trace the sampler dropped
    (`trace_dropped`): a span begun in it would never be recorded."""
    parent = trace.get_current_span(context).get_span_context()
    return parent.is_valid and not parent.trace_flags.sampled


def span_unless_dropped(
    spans: trace.Tracer, name: str, context: Context | None = None, **options: Any
) -> contextlib.AbstractContextManager[trace.Span]:
    """A span `name` of `spans` under `context` (the current one by default), made current;
    for a trace the sampler dropped, `context` made current without one (`in_context`), as
    the span would never be recorded and what is sent meanwhile carries the trace on alike."""
    if not dropped(context):
        return spans.start_as_current_span(name, context=context, **options)
    if context is None:
        return contextlib.nullcontext(trace.get_current_span())
    return in_context(context)


@contextlib.contextmanager
def in_context(context: Context) -> Iterator[trace.Span]:
    """`context` made current, without a span of its own: what is done and sent meanwhile
    carries the trace on as a span would, where a span would never be recorded."""
    token = attach(context)
    try:
        yield trace.get_current_span(context)
    finally:
        detach(token)


def annotate(**attributes: str | int | bool | None) -> None:
    """Add attributes (incident id, rule ids, party, channel ...) to the active span."""
    span = trace.get_current_span()
    if span.is_recording():
        for name, value in attributes.items():
            if value is not None:
                span.set_attribute(name.replace("_", "."), value)


@contextlib.contextmanager
def in_trace_of(
    headers: dict[str, str], name: str, **attributes: str | None
) -> Iterator[trace.Span]:
    """A span continuing the trace whose context `headers` carry (work picked up later, by
    a worker, still belongs to the incident's trace). Done for a request of another trace
    (an acknowledgement link followed), it links that request's span: each leads to the other."""
    context = extract(headers or {})
    if dropped(context):
        with in_context(context) as unrecorded:
            yield unrecorded
        return
    continued = trace.get_current_span(context).get_span_context()
    caller = trace.get_current_span().get_span_context()
    links = (
        [trace.Link(caller)] if caller.is_valid and caller.trace_id != continued.trace_id else []
    )
    with tracer.start_as_current_span(name, context=context, links=links) as span:
        annotate(**attributes)
        yield span
