"""`sqjz-serve <service>`: one service of the image under uvicorn, with the options it runs with
in production and under `make run` alike.

One image carries every service; the command chooses which runs (the manifests pass it as the
container's `args`). `sqjz-serve --healthcheck` is the image's HEALTHCHECK: the service is
the container's argument, which a health check does not see, so it asks each service's port.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request

from shared.settings import CONSOLE, SERVICE_NAMES, Settings

SERVABLE = (*SERVICE_NAMES, CONSOLE)

# On SIGTERM uvicorn stops accepting and waits this long for requests in flight; then the
# service finishes the records in hand and publishes its outbox (SHUTDOWN_GRACE_SECONDS). The
# pods' terminationGracePeriodSeconds leaves room for both. The console's live streams never end
# by themselves: it cuts them sooner rather than wait for every browser to leave (each
# reconnects to a running replica).
GRACEFUL_STOP_SECONDS: dict[str, int] = {**dict.fromkeys(SERVICE_NAMES, 20), CONSOLE: 3}

# How long an idle keep-alive connection stays open (uvicorn closes it after 5 s by default). A
# client that reuses a connection just as the server closes it gets no answer: a pool that keeps
# connections as long as the server (httpx: 5 s) or longer (ingress-nginx upstream: 60 s) meets
# that race, and a report posted on such a connection fails. The server keeps them longer than
# any of its clients, so they are the ones to close.
KEEP_ALIVE_SECONDS = 75


def default_port(service: str) -> int:
    """The service's port when nothing else is said (`INTAKE_PORT`'s default, …)."""
    default = Settings.model_fields[f"{service}_port"].default
    assert isinstance(default, int)
    return default


def healthy(ports: list[int], timeout: float = 4.0) -> bool:
    """Whether a service of this container answers /healthz on one of `ports`."""
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout):
                return True
        except (urllib.error.URLError, OSError):
            continue
    return False


def parser() -> argparse.ArgumentParser:
    described = argparse.ArgumentParser(
        prog="sqjz-serve",
        description="Run one service (the image's command): "
        + ", ".join(SERVABLE)
        + ". Its port is the service's own unless --port says otherwise.",
    )
    described.add_argument("service", nargs="?", choices=SERVABLE)
    described.add_argument("--host", default="0.0.0.0", help="address to listen on (0.0.0.0)")
    described.add_argument("--port", type=int, help="port to listen on (the service's own)")
    described.add_argument(
        "--healthcheck",
        action="store_true",
        help="exit 0 when a service of this container answers /healthz (--port, or each "
        "service's own port), 1 otherwise",
    )
    return described


def main(argv: list[str] | None = None) -> None:
    described = parser()
    arguments = described.parse_args(argv)
    if arguments.healthcheck:
        ports = [arguments.port] if arguments.port else [default_port(s) for s in SERVABLE]
        sys.exit(0 if healthy(ports) else 1)
    if arguments.service is None:
        described.error(f"name the service to run: one of {', '.join(SERVABLE)}")
    service: str = arguments.service
    # Spans, metrics and logs name the service (a deployment may name it otherwise).
    os.environ.setdefault("OTEL_SERVICE_NAME", service)
    import uvicorn

    from shared.httpserver import serve

    # Requests are measured in /metrics and traced, and the services log JSON: no access log.
    serve(
        uvicorn.Config(
            f"services.{service}.app:create_app",
            factory=True,
            host=arguments.host,
            port=arguments.port or default_port(service),
            timeout_graceful_shutdown=GRACEFUL_STOP_SECONDS[service],
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
    )


if __name__ == "__main__":
    main()
