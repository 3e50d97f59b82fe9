"""`make bench` traces as production does: the production overlay's sampler, spans exported to
the sink, which answers them and records no alert for them."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased

from bench.report_to_alert import TRACING_SETTINGS, production_tracing
from bench.sink import Sink
from tests.deploy.support import of_kind, rendered


def test_the_bench_takes_its_sampler_from_the_production_overlay() -> None:
    """What the bench sets is what the rendered production ConfigMap gives the services."""
    [environment] = [
        config_map
        for config_map in of_kind(rendered("prod"), "ConfigMap")
        if config_map["metadata"]["name"].startswith("correction-emergency-env")
    ]
    tracing = production_tracing("http://127.0.0.1:9100")
    assert tracing["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:9100"
    for name in TRACING_SETTINGS:
        assert tracing[name] == environment["data"][name]


def test_the_production_sampler_is_one_the_sdk_knows(monkeypatch: Any) -> None:
    """A misspelt sampler name makes the SDK fall back to its default without a word."""
    for name, value in production_tracing("http://127.0.0.1:9100").items():
        monkeypatch.setenv(name, value)
    sampler = TracerProvider().sampler
    assert isinstance(sampler, ParentBased)
    assert "TraceIdRatioBased" in sampler.get_description()


async def test_the_sink_answers_spans_and_records_only_alerts() -> None:
    sink = Sink()
    answers: list[dict[str, Any]] = []

    async def call(method: str, path: str, body: bytes) -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            answers.append(message)

        await sink({"type": "http", "method": method, "path": path}, receive, send)

    await call("POST", "/v1/traces", b"\x0a\x02protobuf")
    await call("POST", "/alerts", json.dumps({"incident_id": "i-1", "party": "GA"}).encode())
    assert [a["status"] for a in answers if a["type"] == "http.response.start"] == [200, 200]
    assert [(incident, party) for incident, party, _ in sink.arrivals] == [("i-1", "GA")]
