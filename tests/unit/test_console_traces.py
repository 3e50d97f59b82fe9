"""The console's traces (services/console/traces.py): OTLP exports read, kept within bounds,
and laid out as the waterfall of an incident."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.sdk.resources import Resource as SdkResource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.console.traces import (
    SCALE,
    THINNEST_BAR,
    ExportRefused,
    Span,
    SpansIntoStore,
    TraceStore,
    shown_duration,
    spans_of_export,
    trace_link,
    unpacked_body,
    waterfall,
)
from shared.settings import CONSOLE, SERVICE_NAMES, Settings
from tools.devrun import ServiceProcesses

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
OTHER_TRACE = bytes.fromhex("00f067aa0ba902b700f067aa0ba902b7")
SECOND = 1_000_000_000
T0 = 1_780_000_000 * SECOND


def text(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def proto_span(span_id: str, name: str, start: int, end: int, parent: str = "", **extra):
    return ProtoSpan(
        trace_id=extra.pop("trace_id", TRACE),
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(parent),
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        **extra,
    )


def export_of(*by_service: tuple[str, list[ProtoSpan]]) -> bytes:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=[text("service.name", service)]),
                scope_spans=[ScopeSpans(spans=spans)],
            )
            for service, spans in by_service
        ]
    ).SerializeToString()


def test_an_export_names_each_span_its_service_parent_kind_and_outcome():
    body = export_of(
        (
            "intake",
            [
                proto_span(
                    "00000000000000a1",
                    "POST /v1/incidents",
                    T0,
                    T0 + 40_000_000,
                    kind=ProtoSpan.SPAN_KIND_SERVER,
                    attributes=[
                        text("incident.id", "7d1f"),
                        KeyValue(key="http.status_code", value=AnyValue(int_value=201)),
                        KeyValue(key="drill", value=AnyValue(bool_value=False)),
                        KeyValue(
                            key="rules",
                            value=AnyValue(
                                array_value=ArrayValue(
                                    values=[
                                        AnyValue(string_value="R1"),
                                        AnyValue(string_value="R9"),
                                    ]
                                )
                            ),
                        ),
                    ],
                )
            ],
        ),
        (
            "notification",
            [
                proto_span(
                    "00000000000000b2",
                    "notification send",
                    T0 + SECOND,
                    T0 + 2 * SECOND,
                    parent="00000000000000a1",
                    kind=ProtoSpan.SPAN_KIND_INTERNAL,
                    status=Status(code=Status.STATUS_CODE_ERROR),
                    links=[
                        ProtoSpan.Link(
                            trace_id=OTHER_TRACE, span_id=bytes.fromhex("00000000000000c3")
                        )
                    ],
                ),
                # A span with no proper trace id belongs to no trace: left out.
                ProtoSpan(trace_id=b"\x01", span_id=b"\x02" * 8, name="broken"),
            ],
        ),
    )
    root, send = spans_of_export(body)
    assert root == Span(
        trace_id=TRACE.hex(),
        span_id="00000000000000a1",
        parent_id=None,
        service="intake",
        name="POST /v1/incidents",
        kind="SERVER",
        start_ns=T0,
        end_ns=T0 + 40_000_000,
        failed=False,
        attributes=(
            ("incident.id", "7d1f"),
            ("http.status_code", "201"),
            ("drill", "false"),
            ("rules", "[R1, R9]"),
        ),
    )
    assert (send.service, send.parent_id, send.kind, send.failed) == (
        "notification",
        "00000000000000a1",
        "INTERNAL",
        True,
    )
    assert send.links == ((OTHER_TRACE.hex(), "00000000000000c3"),)
    assert send.duration_ns == SECOND


def test_spans_the_sdk_exporter_encodes_are_read_back():
    """What the services' OTLPSpanExporter sends: the SDK's own encoding of finished spans."""
    finished = InMemorySpanExporter()
    provider = TracerProvider(resource=SdkResource.create({"service.name": "escalation"}))
    provider.add_span_processor(SimpleSpanProcessor(finished))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("incidents.v1 process") as parent:
        parent.set_attribute("incident.id", "abc")
        with tracer.start_as_current_span("escalations.v1 publish"):
            pass
    body = encode_spans(finished.get_finished_spans()).SerializeToString()
    spans = {span.name: span for span in spans_of_export(gzip.decompress(gzip.compress(body)))}
    assert set(spans) == {"incidents.v1 process", "escalations.v1 publish"}
    process, publish = spans["incidents.v1 process"], spans["escalations.v1 publish"]
    assert publish.parent_id == process.span_id == f"{parent.get_span_context().span_id:016x}"
    assert publish.trace_id == process.trace_id == f"{parent.get_span_context().trace_id:032x}"
    assert process.service == "escalation"
    assert ("incident.id", "abc") in process.attributes
    provider.shutdown()


def test_the_console_keeps_its_own_spans_in_its_store():
    store = TraceStore()
    provider = TracerProvider(resource=SdkResource.create({"service.name": "console"}))
    provider.add_span_processor(SimpleSpanProcessor(SpansIntoStore(store)))
    with provider.get_tracer("test").start_as_current_span("GET /incidents/{id}") as page:
        pass
    trace_id = f"{page.get_span_context().trace_id:032x}"
    assert [(s.service, s.name) for s in store.spans_of(trace_id)] == [
        ("console", "GET /incidents/{id}")
    ]
    provider.shutdown()


def test_what_is_no_export_is_refused():
    with pytest.raises(ExportRefused) as refused:
        spans_of_export(b"\xff\xff\xff not protobuf")
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [
        (None, lambda body: body),
        ("identity", lambda body: body),
        ("gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("deflate", zlib.compress),
    ],
)
def test_a_body_is_unpacked_as_the_exporter_packed_it(encoding, pack):
    body = export_of(("audit", [proto_span("00000000000000a1", "x", T0, T0 + 1)]))
    assert unpacked_body(pack(body), encoding) == body


def test_bodies_that_cannot_be_unpacked_within_the_limit_are_refused():
    bomb = gzip.compress(b"\0" * 100_000)
    assert len(bomb) < 1000
    cases = [
        (bomb, "gzip", 413),
        (b"x" * 2000, None, 413),
        (b"not gzip at all", "gzip", 400),
        (gzip.compress(b"a whole export")[:-12], "gzip", 400),
        (b"abc", "br", 415),
    ]
    for body, encoding, status in cases:
        with pytest.raises(ExportRefused) as refused:
            unpacked_body(body, encoding, limit=1000)
        assert refused.value.status == status, (encoding, refused.value.detail)


def span(
    span_id: str,
    start: int,
    end: int,
    parent: str | None = None,
    trace_id: str = TRACE.hex(),
    service: str = "intake",
) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent,
        service=service,
        name=f"span {span_id}",
        kind="INTERNAL",
        start_ns=start,
        end_ns=end,
    )


def test_the_store_keeps_the_latest_traces_within_its_bounds():
    store = TraceStore(max_traces=2, max_spans=5, max_spans_per_trace=3)
    store.add([span("a1", 0, 1, trace_id="1" * 32), span("a2", 0, 1, trace_id="1" * 32)])
    store.add([span("b1", 0, 1, trace_id="2" * 32)])
    # Trace 1 hears of a span again: it becomes the newest, so trace 2 goes first.
    store.add([span("a3", 0, 1, trace_id="1" * 32)])
    store.add([span("c1", 0, 1, trace_id="3" * 32)])
    assert len(store) == 2
    assert store.spans_of("2" * 32) == []
    assert [s.span_id for s in store.spans_of("1" * 32)] == ["a1", "a2", "a3"]
    # No trace holds more than its share: the fourth span of trace 1 is dropped.
    store.add([span("a4", 0, 1, trace_id="1" * 32)])
    assert len(store.spans_of("1" * 32)) == 3
    # An export sent again (a retry) replaces its spans, never doubles them.
    store.add([span("c1", 0, 2, trace_id="3" * 32)])
    assert [s.end_ns for s in store.spans_of("3" * 32)] == [2]
    assert store.span_count == 4
    # Too many spans in all: the trace heard of longest ago goes.
    store.add([span(f"d{n}", 0, 1, trace_id="4" * 32) for n in range(3)])
    assert store.span_count <= 5
    assert store.spans_of("1" * 32) == []
    assert store.dropped == 1 + 1 + 3  # trace 2's span, trace 1's fourth, trace 1's three


def test_a_trace_comes_with_the_traces_its_spans_link_to():
    store = TraceStore()
    acknowledged = Span(
        trace_id=TRACE.hex(),
        span_id="a2",
        parent_id="a1",
        service="notification",
        name="notification acknowledged",
        kind="INTERNAL",
        start_ns=5,
        end_ns=6,
        links=((OTHER_TRACE.hex(), "c1"),),
    )
    store.add(
        [
            span("a1", 0, 1),
            acknowledged,
            span("c1", 4, 7, trace_id=OTHER_TRACE.hex()),
            span("z1", 0, 9, trace_id="9" * 32),
        ]
    )
    assert {s.span_id for s in store.with_linked(TRACE.hex())} == {"a1", "a2", "c1"}
    assert store.with_linked("f" * 32) == []


def test_the_waterfall_orders_spans_by_start_nested_under_their_parents():
    spans = [
        span("ack", 900, 1000, parent="route", service="notification"),
        span("root", 0, 100),
        span("route", 200, 300, parent="root", service="escalation"),
        span("publish", 50, 60, parent="root"),
        span("send", 400, 500, parent="route", service="notification"),
        span("lost", 600, 610, parent="never-arrived", service="audit"),
    ]
    shown = waterfall(TRACE.hex(), spans)
    assert [(row.span.span_id, row.depth) for row in shown.rows] == [
        ("root", 0),
        ("publish", 1),
        ("route", 1),
        ("send", 2),
        ("ack", 2),
        ("lost", 0),
    ]
    assert shown.duration_ns == 1000
    rows = {row.span.span_id: row for row in shown.rows}
    assert (rows["route"].left, rows["route"].width, rows["route"].offset_ns) == (200.0, 100.0, 200)
    assert rows["lost"].orphan and not rows["root"].orphan
    # A span of microseconds in a long trace still shows as a bar, inside the axis.
    assert rows["publish"].width == 10.0
    assert all(row.left + row.width <= SCALE + THINNEST_BAR for row in shown.rows)
    assert shown.services == ["audit", "escalation", "intake", "notification"]


def test_the_waterfall_marks_linked_requests_and_survives_bad_parents():
    spans = [
        span("a", 0, 10, parent="b"),
        span("b", 5, 10, parent="a"),  # a cycle: no root reaches them
        span("c", 2, 3, trace_id=OTHER_TRACE.hex()),
        span("c", 2, 3, trace_id=OTHER_TRACE.hex()),  # the same span twice
        span("tiny", 10, 10),
    ]
    shown = waterfall(TRACE.hex(), spans)
    assert sorted(row.span.span_id for row in shown.rows) == ["a", "b", "c", "tiny"]
    linked = [row.span.span_id for row in shown.rows if row.linked]
    assert linked == ["c"]
    tiny = next(row for row in shown.rows if row.span.span_id == "tiny")
    assert tiny.width == THINNEST_BAR and tiny.left == SCALE - THINNEST_BAR
    assert waterfall(TRACE.hex(), []).rows == ()


@pytest.mark.parametrize(
    ("nanoseconds", "words"),
    [
        (400_000, "0.4 ms"),
        (12_300_000, "12 ms"),
        (1_520_000_000, "1.52 s"),
        (185 * SECOND, "3 分 05 秒"),
        (2 * 3600 * SECOND + 7 * 60 * SECOND, "2 小时 07 分"),
    ],
)
def test_durations_read_as_people_say_them(nanoseconds, words):
    assert shown_duration(nanoseconds) == words


def test_the_trace_link_opens_the_trace_backend_or_locally_the_console_s_waterfall():
    backend = "https://traces.example/trace/{trace_id}?incident={incident_id}"
    assert trace_link(backend, False, "7d1f", TRACE.hex()) == (
        f"https://traces.example/trace/{TRACE.hex()}?incident=7d1f"
    )
    assert trace_link(backend, True, "7d1f", TRACE.hex()).startswith("https://traces.example/")
    assert trace_link(None, True, "7d1f", TRACE.hex()) == "/incidents/7d1f/trace"
    assert trace_link(None, False, "7d1f", TRACE.hex()) is None
    assert trace_link(backend, True, "7d1f", None) is None  # its report not seen yet


# --- receiving only on a local run ------------------------------------------------------------


def test_production_refuses_a_console_that_takes_spans_from_anyone():
    from services.console.app import production_gaps

    receiving = Settings(console_trace_receiver=True)
    assert "CONSOLE_TRACE_RECEIVER" in {gap.setting for gap in production_gaps(receiving)}
    assert "CONSOLE_TRACE_RECEIVER" not in {gap.setting for gap in production_gaps(Settings())}


def processes(
    environment: dict[str, str], services=(*SERVICE_NAMES, CONSOLE), traces_to_console=True
) -> ServiceProcesses:
    return ServiceProcesses(
        environment,
        {service: 9000 + n for n, service in enumerate(services)},
        Path("/nonexistent"),
        traces_to_console=traces_to_console,
    )


def test_a_console_not_told_to_receive_spans_has_no_receiver(tmp_path):
    from services.console.app import create_app

    app = create_app(Settings(local_data_dir=tmp_path, log_json=False))
    assert app.state.traces is None
    assert "/v1/traces" not in {getattr(route, "path", None) for route in app.routes}


def test_make_run_sends_every_process_spans_to_the_console(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "3000")  # the developer's own choice stays
    running = processes({})
    for service in SERVICE_NAMES:
        told = running.neighbours(service)
        assert told["OTEL_EXPORTER_OTLP_ENDPOINT"] == running.url(CONSOLE)
        assert told["OTEL_EXPORTER_OTLP_COMPRESSION"] == "gzip"
        assert "OTEL_BSP_SCHEDULE_DELAY" not in told
        assert "CONSOLE_TRACE_RECEIVER" not in told
    # The console receives, and keeps its own spans without sending them to itself.
    told = running.neighbours(CONSOLE)
    assert told["CONSOLE_TRACE_RECEIVER"] == "true"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in told


def test_spans_stay_where_the_developer_sends_them_or_where_no_console_is(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert processes({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}).tracing() == {}
    assert processes({}, services=SERVICE_NAMES).tracing() == {}
    assert processes({}, traces_to_console=False).tracing() == {}
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318")
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in processes({}).neighbours()
