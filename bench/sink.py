"""A webhook sink in a process of its own, timing each alert as it arrives.

    python -m bench.sink --port 9100

Every POST answers 200 at once and is recorded as (incident id, party, arrival time on the
system-wide monotonic clock, in ns), so the load generator in another process can subtract the
time it got its 201. `GET /received` returns what arrived since the last `DELETE /received`. It also
stands in for the OpenTelemetry collector: spans posted to /v1/traces are answered and dropped.

A raw ASGI app rather than a framework: the sink must not be what the latency measures.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import uvicorn

Arrival = tuple[str, str, int]
# Where OTLP exporters send spans, metrics and logs.
OTLP_PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")


class Sink:
    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        arrived = time.monotonic_ns()
        method = scope["method"]
        if scope["path"].startswith(OTLP_PATHS):
            # The services' spans (the bench traces as production does): answered, not kept.
            await self._answer(send, b"{}")
        elif method == "POST":
            try:
                alert = json.loads(body)
                self.arrivals.append(
                    (str(alert.get("incident_id")), str(alert.get("party")), arrived)
                )
            except ValueError:
                pass
            await self._answer(send, b'{"ok":true}')
        elif method == "GET":
            await self._answer(send, json.dumps(self.arrivals).encode())
        elif method == "DELETE":
            self.arrivals = []
            await self._answer(send, b"{}")
        else:
            await self._answer(send, b"{}", status=405)

    @staticmethod
    async def _answer(send: Any, body: bytes, status: int = 200) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    uvicorn.run(
        Sink(),
        host="127.0.0.1",
        port=arguments.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
