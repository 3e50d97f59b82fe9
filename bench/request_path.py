"""Intake's own work for one report, in process: the request path without the network or the
database, so that a change to it can be told from the machine's swing.

    python -m bench.request_path [--requests 2000] [--rounds 5] [--warmup 300] [--untraced]

Builds intake's app as it runs (its middleware, authentication, validation, sealing, the
event and its outbox values, tracing under the production overlay's sampler) and sends it the
load generator's reports as ASGI calls, one after another. The call that writes the report
(`intake.first_report`, one round trip) is answered in process as a new incident, so nothing
of PostgreSQL, asyncpg or the HTTP server is in the figure: it is intake's CPU per report
less those. Prints the process CPU time per request of each round; the lowest is the figure.

The machine swings by a fifth between runs (`docs/performance.md`); counted instructions do
not: run it under `valgrind --tool=callgrind` with `--warmup 0 --rounds 1` and two request
counts, and the difference of the two totals divided by the difference of the counts is the
instructions per report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.report_to_alert import UNLIMITED_CALLERS, Reports, production_sampler
from shared.settings import Settings
from tools.devrun import development_secrets

HOST = ("127.0.0.1", 8001)


def environment(work: Path, traced: bool) -> dict[str, str]:
    """Intake's settings for an app that is never started: keys of its own, no rate limit,
    and when `traced` the production overlay's sampler with its spans written nowhere."""
    settings = {**development_secrets(work), **UNLIMITED_CALLERS}
    if traced:
        settings |= {**production_sampler(), "OTEL_TRACES_FILE": os.devnull}
    return settings


def intake_without_database() -> Any:
    """Intake's app whose first-report call answers "written" without a database."""
    from services.intake import first_report
    from services.intake.app import create_app

    written = first_report.Written(
        known_ref=False, open_incidents=None, key_claimed=True, written=True, candidates=[]
    )

    @contextlib.asynccontextmanager
    async def no_connection(_sessions: object) -> AsyncIterator[None]:
        yield None

    async def no_driver(connection: None) -> None:
        return connection

    async def write_incident(_connection: object, _report: dict[str, Any]) -> Any:
        return written

    # The call's own path (`FirstReports`, one report at a time here) is kept, its statement not.
    first_report.single_statement = no_connection  # type: ignore[assignment]
    first_report.driver_of = no_driver  # type: ignore[assignment]
    first_report.write_incident = write_incident  # type: ignore[assignment]
    app = create_app()
    # Made when the app starts, which it never does here; the call above needs none.
    app.state.runtime.sessions = None
    return app


async def post(app: Any, body: bytes, headers: dict[str, str]) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/incidents",
        "raw_path": b"/v1/incidents",
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        + [(b"host", b"%s:%d" % (HOST[0].encode(), HOST[1]))],
        "client": ("127.0.0.1", 50000),
        "server": HOST,
        "state": {},
    }
    messages: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:  # the answer is complete before anything asks again
            raise RuntimeError("the request was read twice")
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    status = messages[0]["status"]
    if status != 201:
        raise SystemExit(f"intake answered {status}: {messages[1:]}")


async def measure(
    app: Any, reports: Reports, requests: int, rounds: int, warmup: int
) -> list[float]:
    """Process CPU microseconds per request of each round, after `warmup` reports."""
    for _ in range(warmup):
        await post(app, *reports.next()[1:])
    prepared = [reports.next()[1:] for _ in range(requests)]
    per_request = []
    for _ in range(rounds):
        began = time.process_time()
        for body, headers in prepared:
            await post(app, body, headers)
        per_request.append((time.process_time() - began) / requests * 1e6)
    return per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300, help="reports sent before measuring")
    parser.add_argument("--untraced", action="store_true", help="no tracer provider at all")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="request-path-") as folder:
        work = Path(folder)
        os.environ.update(environment(work, traced=not arguments.untraced))
        app = intake_without_database()
        reports = Reports((work / "auth" / "signing-key.pem").read_bytes(), Settings())
        rounds = asyncio.run(
            measure(app, reports, arguments.requests, arguments.rounds, arguments.warmup)
        )
    print(
        f"intake's request path, {'untraced' if arguments.untraced else 'traced'}: "
        + " ".join(f"{value:.0f}" for value in rounds)
        + f" µs CPU a report; lowest {min(rounds):.0f}"
    )


if __name__ == "__main__":
    main()
