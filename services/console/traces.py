"""Traces for the duty desk on a local run: the spans the services export over OTLP/HTTP, kept
in memory, and the waterfall of one incident's trace.

Only a local run receives spans (`CONSOLE_TRACE_RECEIVER`); in production the incident page
links the county's trace backend instead. Parsing and layout are pure; `TraceStore` is the
bounded memory the app builds once and hands to its routes (and to `SpansIntoStore`, which
adds the console's own spans).
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

# A batch is at most a few MiB unpacked; more than this is no exporter's batch but a bomb.
MAX_EXPORT_BYTES = 16 * 1024 * 1024
# Enough of a span's attributes to tell what it did (SQL statements can be long).
MAX_ATTRIBUTES = 24
MAX_ATTRIBUTE_CHARS = 300
UNKNOWN_SERVICE = "unknown"
KINDS = {
    ProtoSpan.SPAN_KIND_INTERNAL: "INTERNAL",
    ProtoSpan.SPAN_KIND_SERVER: "SERVER",
    ProtoSpan.SPAN_KIND_CLIENT: "CLIENT",
    ProtoSpan.SPAN_KIND_PRODUCER: "PRODUCER",
    ProtoSpan.SPAN_KIND_CONSUMER: "CONSUMER",
}


class ExportRefused(ValueError):
    """A body that is no OTLP trace export this receiver can read; `status` says how."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Span:
    """What the waterfall needs of one span; ids in lower-case hex as W3C `traceparent`."""

    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    failed: bool = False
    attributes: tuple[tuple[str, str], ...] = ()
    # (trace id, span id) of each span this one links to: the request that caused work done
    # in another trace (an acknowledgement link followed, say).
    links: tuple[tuple[str, str], ...] = ()

    @property
    def duration_ns(self) -> int:
        return max(self.end_ns - self.start_ns, 0)


def unpacked_body(
    body: bytes, content_encoding: str | None, limit: int = MAX_EXPORT_BYTES
) -> bytes:
    """The export as sent before compression (the exporter may gzip or deflate it); at most
    `limit` bytes unpacked."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        if len(body) > limit:
            raise ExportRefused(413, f"an export is at most {limit} bytes")
        return body
    if encoding not in ("gzip", "deflate"):
        raise ExportRefused(415, f"Content-Encoding {encoding!r}: only gzip and deflate")
    # MAX_WBITS | 32 reads a gzip or a zlib header alike: "deflate" in HTTP is zlib's format.
    unpacker = zlib.decompressobj(zlib.MAX_WBITS | 32)
    try:
        unpacked = unpacker.decompress(body, limit + 1)
    except zlib.error as error:
        raise ExportRefused(400, f"the {encoding} body does not unpack: {error}") from error
    if len(unpacked) > limit or unpacker.unconsumed_tail:
        raise ExportRefused(413, f"an export is at most {limit} bytes unpacked")
    if not unpacker.eof:
        raise ExportRefused(400, f"the {encoding} body is cut short")
    return unpacked


def _shown(value: AnyValue) -> str:
    which = value.WhichOneof("value")
    if which is None:
        return ""
    if which == "array_value":
        return "[" + ", ".join(_shown(item) for item in value.array_value.values) + "]"
    if which == "kvlist_value":
        return (
            "{"
            + ", ".join(f"{kv.key}={_shown(kv.value)}" for kv in value.kvlist_value.values)
            + "}"
        )
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    return str(getattr(value, which))


def _attributes(attributes: Iterable) -> tuple[tuple[str, str], ...]:
    return tuple(
        (attribute.key, _shown(attribute.value)[:MAX_ATTRIBUTE_CHARS])
        for _, attribute in zip(range(MAX_ATTRIBUTES), attributes, strict=False)
    )


def spans_of_export(body: bytes) -> list[Span]:
    """The spans of an OTLP `ExportTraceServiceRequest` (protobuf), each with its service."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as error:
        raise ExportRefused(400, f"not an OTLP trace export: {error}") from error
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        service = next(
            (
                _shown(attribute.value)
                for attribute in resource_spans.resource.attributes
                if attribute.key == "service.name"
            ),
            UNKNOWN_SERVICE,
        )
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    continue  # no trace to put it in
                spans.append(
                    Span(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex() or None,
                        service=service,
                        name=span.name,
                        kind=KINDS.get(span.kind, "INTERNAL"),
                        start_ns=span.start_time_unix_nano,
                        end_ns=max(span.end_time_unix_nano, span.start_time_unix_nano),
                        failed=span.status.code == Status.STATUS_CODE_ERROR,
                        attributes=_attributes(span.attributes),
                        links=tuple(
                            (link.trace_id.hex(), link.span_id.hex())
                            for link in span.links
                            if len(link.trace_id) == 16 and len(link.span_id) == 8
                        ),
                    )
                )
    return spans


@dataclass
class TraceStore:
    """The latest traces, bounded: at most `max_traces` traces, `max_spans` spans in all and
    `max_spans_per_trace` in one. A trace that receives a span becomes the newest; the trace
    heard of longest ago goes first when a bound is reached. The console's own spans arrive
    from the exporter's thread (`SpansIntoStore`), hence the lock."""

    max_traces: int = 1000
    max_spans: int = 50_000
    max_spans_per_trace: int = 5000
    _traces: OrderedDict[str, dict[str, Span]] = field(default_factory=OrderedDict)
    _span_count: int = 0
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, spans: Iterable[Span]) -> None:
        with self._lock:
            self._add(spans)

    def _add(self, spans: Iterable[Span]) -> None:
        for span in spans:
            held = self._traces.pop(span.trace_id, None)
            if held is None:
                held = {}
            self._traces[span.trace_id] = held  # now the newest
            if span.span_id not in held and len(held) >= self.max_spans_per_trace:
                self.dropped += 1
                continue
            self._span_count += 0 if span.span_id in held else 1
            held[span.span_id] = span  # an export sent again replaces, never doubles
        while self._traces and (
            len(self._traces) > self.max_traces or self._span_count > self.max_spans
        ):
            _, oldest = self._traces.popitem(last=False)
            self._span_count -= len(oldest)
            self.dropped += len(oldest)

    def spans_of(self, trace_id: str) -> list[Span]:
        with self._lock:
            return list(self._traces.get(trace_id.lower(), {}).values())

    def with_linked(self, trace_id: str, most: int = 20) -> list[Span]:
        """The trace's spans and those of the traces its spans link to (the requests that
        did its later work: an acknowledgement link followed), at most `most` of them."""
        spans = self.spans_of(trace_id)
        linked = list(
            dict.fromkeys(
                linked_trace
                for span in spans
                for linked_trace, _ in span.links
                if linked_trace != span.trace_id
            )
        )
        for other in linked[:most]:
            spans.extend(self.spans_of(other))
        return spans

    @property
    def span_count(self) -> int:
        return self._span_count

    def __len__(self) -> int:
        return len(self._traces)


def trace_link(
    template: str | None, receiving: bool, incident_id: str, trace_id: str | None
) -> str | None:
    """Where the incident page's trace link goes: the trace backend the URL template names
    (production); without one, the console's own waterfall while it receives spans; nowhere
    when neither, or before the incident's trace is known."""
    if trace_id is None:
        return None
    if template is not None:
        return template.format(trace_id=trace_id, incident_id=incident_id)
    return f"/incidents/{incident_id}/trace" if receiving else None


class SpansIntoStore(SpanExporter):
    """The console's own spans, straight into its store: it need not send them to itself
    over HTTP (nor lose those of its start, before it listens, and of its stop)."""

    def __init__(self, store: TraceStore) -> None:
        self._store = store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._store.add(spans_of_export(encode_spans(spans).SerializeToString()))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


# --- the waterfall ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One span on the waterfall: where its bar starts and how long it is, in thousandths of
    the whole trace (an SVG's width), and how deep it hangs under its root."""

    span: Span
    depth: int
    offset_ns: int
    left: float
    width: float
    orphan: bool
    linked: bool

    @property
    def attributes_text(self) -> str:
        return "\n".join(f"{name}={value}" for name, value in self.span.attributes)


@dataclass(frozen=True)
class Waterfall:
    trace_id: str
    rows: tuple[Row, ...]
    duration_ns: int

    @property
    def services(self) -> list[str]:
        return sorted({row.span.service for row in self.rows})


SCALE = 1000.0
# A bar this thin (of SCALE) still shows: a span of microseconds in a trace of minutes.
THINNEST_BAR = 2.0


def waterfall(trace_id: str, spans: Sequence[Span]) -> Waterfall:
    """Every span once, ordered by start and nested under its parent (depth first). A span
    whose parent never arrived (dropped, or not exported yet) is laid out as a root, marked
    `orphan`; one of another trace (a linked request) is marked `linked`."""
    by_id: dict[str, Span] = {}
    for span in spans:
        by_id.setdefault(span.span_id, span)
    if not by_id:
        return Waterfall(trace_id, (), 0)
    start = min(span.start_ns for span in by_id.values())
    end = max(span.end_ns for span in by_id.values())
    whole = max(end - start, 1)
    children: dict[str, list[Span]] = {}
    roots: list[Span] = []
    for span in by_id.values():
        if span.parent_id is not None and span.parent_id in by_id:
            children.setdefault(span.parent_id, []).append(span)
        else:
            roots.append(span)

    def in_order(found: Iterable[Span]) -> list[Span]:
        return sorted(found, key=lambda span: (span.start_ns, span.end_ns, span.span_id))

    rows: list[Row] = []
    placed: set[str] = set()

    def place(span: Span, depth: int) -> None:
        # Iterative, and each span once: a malformed parent chain (a cycle) cannot loop.
        stack = [(span, depth)]
        while stack:
            current, level = stack.pop()
            if current.span_id in placed:
                continue
            placed.add(current.span_id)
            left = (current.start_ns - start) / whole * SCALE
            rows.append(
                Row(
                    span=current,
                    depth=level,
                    offset_ns=current.start_ns - start,
                    left=round(min(left, SCALE - THINNEST_BAR), 2),
                    width=round(max(current.duration_ns / whole * SCALE, THINNEST_BAR), 2),
                    orphan=level == 0 and current.parent_id is not None,
                    linked=current.trace_id != trace_id,
                )
            )
            for child in reversed(in_order(children.get(current.span_id, []))):
                stack.append((child, level + 1))

    for root in in_order(roots):
        place(root, 0)
    # Spans only reachable through a cycle of parents: shown, as roots, rather than lost.
    for span in in_order(span for span in by_id.values() if span.span_id not in placed):
        place(span, 0)
    return Waterfall(trace_id, tuple(rows), end - start)


def shown_duration(nanoseconds: int) -> str:
    """A duration as people read it on the waterfall: 0.4 ms, 12 ms, 1.52 s, 3 分 05 秒."""
    milliseconds = nanoseconds / 1_000_000
    if milliseconds < 10:
        return f"{milliseconds:.1f} ms"
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    seconds = milliseconds / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} 分 {rest:02d} 秒"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} 小时 {minutes:02d} 分"
