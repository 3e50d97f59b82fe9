"""Run the whole system locally: infrastructure plus the four services as processes.

`make run` calls `python -m shared.devrun`; the end-to-end tests use `ServiceProcesses`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets as secrets_module
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.auth import ensure_dev_keys, mint
from shared.localinfra import infrastructure
from shared.pii import new_key
from shared.settings import REPOSITORY_ROOT, SERVICE_NAMES, Settings

log = logging.getLogger(__name__)


@dataclass
class ServiceProcesses:
    """The four services, each a uvicorn process, sharing one environment."""

    environment: Mapping[str, str]
    ports: Mapping[str, int]
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start_one(self, service: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = (self.log_dir / f"{service}.log").open("ab")
        self.processes[service] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                f"services.{service}.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.ports[service]),
                "--no-access-log",
            ],
            cwd=REPOSITORY_ROOT,
            env={**os.environ, **self.environment, "OTEL_SERVICE_NAME": service},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )

    async def start(self, timeout: float = 60.0) -> None:
        for service in self.ports:
            self.start_one(service)
        await asyncio.gather(*(self.wait_ready(service, timeout) for service in self.ports))

    async def wait_ready(self, service: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while True:
                process = self.processes[service]
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{service} exited with {process.returncode}; "
                        f"see {self.log_dir / (service + '.log')}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"{self.url(service)}/readyz", timeout=2)
                    if response.status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} not ready after {timeout}s")
                await asyncio.sleep(0.1)

    def stop_one(self, service: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        process = self.processes.pop(service, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to all at once, so they shut down in parallel; SIGKILL whoever lingers."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def development_secrets(folder: Path) -> dict[str, str]:
    """Keys for a local run, made once and kept in `folder`: a token signing key (its public
    half verifies callers), a personal-data key and an acknowledgement-link secret.
    Production takes these from its secret store instead."""
    _, jwks = ensure_dev_keys(folder / "auth")
    stored = folder / "secrets.json"
    if stored.exists():
        secrets = json.loads(stored.read_text("utf-8"))
    else:
        secrets = {
            "PII_KEYS": json.dumps({"local-1": new_key()}),
            "PII_CURRENT_KEY_ID": "local-1",
            "NOTIFICATION_ACK_SECRET": secrets_module.token_urlsafe(32),
        }
        stored.write_text(json.dumps(secrets), encoding="utf-8")
        stored.chmod(0o600)
    return {"AUTH_JWKS_FILE": str(jwks), **secrets}


def default_ports(settings: Settings) -> dict[str, int]:
    return {service: settings.port_of(service) for service in SERVICE_NAMES}


async def run_until_interrupted(settings: Settings) -> None:
    async with infrastructure(settings) as infra:
        services = ServiceProcesses(
            {**infra.environment(), **development_secrets(settings.local_data_dir)},
            default_ports(settings),
            settings.local_data_dir / "logs",
        )
        try:
            await services.start()
            print_banner(settings, infra.environment(), services)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            print("\nStopping ...", flush=True)
        finally:
            services.stop()


def print_banner(
    settings: Settings, environment: Mapping[str, str], services: ServiceProcesses
) -> None:
    private_key, _ = ensure_dev_keys(settings.local_data_dir / "auth")
    token = mint(
        private_key.read_bytes(),
        "BLO",
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
    )
    lines = [
        "",
        "社区矫正突发事件应急处置 — the system is running",
        "",
        *(
            f"  {service:<13} {services.url(service)}   (docs: {services.url(service)}/docs)"
            for service in services.ports
        ),
        "",
        f"  PostgreSQL    {environment['DATABASE_URL']}",
        f"  Kafka         {environment['KAFKA_BOOTSTRAP_SERVERS']}",
        f"  alerts file   {settings.alerts_file}",
        f"  service logs  {services.log_dir}",
        "",
        "  Every endpoint but /healthz, /readyz and /metrics needs a bearer token. One for the",
        "  banner office (BLO), valid 8 hours; mint others with",
        "  `.venv/bin/python -m shared.auth mint --party SFS:150626102`:",
        "",
        f"  export TOKEN={token}",
        f'  curl -H "Authorization: Bearer $TOKEN" {services.url("escalation")}'
        "/v1/drills/compliance",
        "",
        "  Report the sample incidents from another terminal:  make demo",
        "  Stop everything:                                   Ctrl-C",
        "",
    ]
    print("\n".join(lines), flush=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_until_interrupted(Settings()))


if __name__ == "__main__":
    main()
