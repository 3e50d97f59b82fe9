"""`make bench` traces as production does: the production overlay's sampler, spans exported to
the sink, which answers them and records no alert for them."""

from __future__ import annotations

import json
from typing import Any

import yaml
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased

from bench.report_to_alert import PRODUCTION_OVERLAY, TRACING_SETTINGS, production_tracing
from bench.sink import Sink


def test_the_bench_takes_its_sampler_from_the_production_overlay() -> None:
    overlay = yaml.safe_load(PRODUCTION_OVERLAY.read_text(encoding="utf-8"))
    literals = {
        literal.split("=", 1)[0]: literal.split("=", 1)[1]
        for generated in overlay["configMapGenerator"]
        if generated["name"] == "correction-emergency-env"
        for literal in generated["literals"]
    }
    tracing = production_tracing("http://127.0.0.1:9100")
    assert tracing["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:9100"
    for name in TRACING_SETTINGS:
        assert tracing[name] == literals[name]


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
