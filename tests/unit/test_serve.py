"""`sqjz-serve <service>`: the image's launcher (shared/serve.py) and the options it owns."""

from __future__ import annotations

import http.server
import logging
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from shared import httpserver, serve
from shared.observability import configure_logging
from shared.settings import CONSOLE, SERVICE_NAMES, Settings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    def serve_config(config: uvicorn.Config) -> None:
        calls.append((config.app, vars(config)))

    monkeypatch.setattr(httpserver, "serve", serve_config)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    return calls


@pytest.mark.parametrize("service", [*SERVICE_NAMES, CONSOLE])
def test_a_service_runs_its_factory_on_its_own_port_without_access_log(
    service: str, started: list[tuple[str, dict[str, Any]]]
) -> None:
    serve.main([service])
    [(app, options)] = started
    assert app == f"services.{service}.app:create_app"
    assert options["factory"] is True
    assert options["host"] == "0.0.0.0"
    assert options["port"] == Settings().port_of(service) == serve.default_port(service)
    assert options["access_log"] is False
    assert options["timeout_graceful_shutdown"] == serve.GRACEFUL_STOP_SECONDS[service]
    # Longer than its clients keep an idle connection (httpx 5 s, ingress-nginx upstream 60 s).
    assert options["timeout_keep_alive"] == serve.KEEP_ALIVE_SECONDS > 60
    assert os.environ["OTEL_SERVICE_NAME"] == service


def test_json_logs_keep_uvicorns_access_log_off() -> None:
    """The services' JSON logging takes uvicorn's own lines, and leaves the access log off as
    uvicorn was started: uvicorn writes a line per request when the access logger has any
    handler, the root's included."""
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    loggers = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    try:
        configure_logging("intake")
        assert not logging.getLogger("uvicorn.access").hasHandlers()
        assert logging.getLogger("uvicorn.error").hasHandlers()
    finally:
        root.handlers[:], level = kept
        root.setLevel(level)
        for name, (handlers, propagate) in loggers.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate


def test_the_console_cuts_its_endless_live_streams_sooner_than_the_services_wait() -> None:
    assert serve.GRACEFUL_STOP_SECONDS[CONSOLE] < min(
        serve.GRACEFUL_STOP_SECONDS[service] for service in SERVICE_NAMES
    )


def test_host_and_port_can_be_chosen(started: list[tuple[str, dict[str, Any]]]) -> None:
    serve.main(["intake", "--host", "127.0.0.1", "--port", "18001"])
    assert started[0][1]["host"] == "127.0.0.1" and started[0][1]["port"] == 18001


def test_a_deployment_naming_the_service_otherwise_keeps_its_name(
    started: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "intake-canary")
    serve.main(["intake"])
    assert os.environ["OTEL_SERVICE_NAME"] == "intake-canary"


@pytest.mark.parametrize("argv", [[], ["billing"]])
def test_no_service_or_an_unknown_one_is_refused_naming_the_services(
    argv: list[str], started: list[tuple[str, dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        serve.main(argv)
    assert refused.value.code == 2
    assert "intake" in capsys.readouterr().err
    assert not started


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def answering_port() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_healthcheck_passes_when_a_port_answers_healthz(answering_port: int) -> None:
    with pytest.raises(SystemExit) as checked:
        serve.main(["--healthcheck", "--port", str(answering_port)])
    assert checked.value.code == 0


def test_the_healthcheck_fails_when_nothing_answers() -> None:
    with socket.socket() as bound_but_not_listening:
        bound_but_not_listening.bind(("127.0.0.1", 0))
        nobody = bound_but_not_listening.getsockname()[1]
        with pytest.raises(SystemExit) as checked:
            serve.main(["--healthcheck", "--port", str(nobody)])
    assert checked.value.code == 1
