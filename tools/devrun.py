"""Run the whole system locally: infrastructure plus the four services as processes.

`make run` calls `sqjz-run`; the end-to-end tests use `ServiceProcesses`.
Under `make run` a `Supervisor` watches the processes: a service that dies is restarted after a
pause that doubles with each crash, every death and restart is said on the terminal and in the
service's log, and after too many crashes in a short time the runner gives up loudly and stops
the whole system rather than pretend it is running. The embedded broker is watched the same way:
restarted on its port, empty, with its topics; the services reconnect by themselves and their
outbox relays publish again what it lost (shared/messaging.py).
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.auth import ensure_dev_keys, mint
from shared.pii import new_key
from shared.settings import CONSOLE, REPOSITORY_ROOT, SERVICE_NAMES, Settings
from tools.localinfra import LocalBroker, infrastructure

log = logging.getLogger(__name__)


@dataclass
class ServiceProcesses:
    """The four services, each a uvicorn process, sharing one environment."""

    environment: Mapping[str, str]
    ports: Mapping[str, int]
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Every process sends its spans to the console, which shows each incident's trace.
    traces_to_console: bool = False

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def neighbours(self, service: str | None = None) -> dict[str, str]:
        """What `service` is told of this run: where each service answers (`INTAKE_URL` ...),
        for the console; alerts' acknowledgement links lead to this run's notification; with the
        console running, record links lead to its incident pages, and spans go to it (`tracing`)."""
        found = {f"{name.upper()}_URL": self.url(name) for name in self.ports}
        if "notification" in self.ports and "NOTIFICATION_PUBLIC_BASE_URL" not in os.environ:
            found["NOTIFICATION_PUBLIC_BASE_URL"] = self.url("notification")
        if CONSOLE in self.ports:
            found["CONSOLE_PUBLIC_URL"] = self.url(CONSOLE)
            found["NOTIFICATION_RECORD_BASE_URL"] = f"{self.url(CONSOLE)}/incidents"
        return {**found, **self.tracing(service)}

    def tracing(self, service: str | None = None) -> dict[str, str]:
        """With `traces_to_console` and the console running: every service exports its spans
        over OTLP to the console, which receives them (and keeps its own, `service` being the
        console, without sending them to itself). A developer who sent spans somewhere of their
        own (`OTEL_EXPORTER_OTLP_ENDPOINT`) keeps it; what they set of the exporter's other
        settings stays theirs too."""
        chosen = {**os.environ, **self.environment}
        if not self.traces_to_console or CONSOLE not in self.ports:
            return {}
        if chosen.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            return {}
        # Batches show within a second; a service's stay gzipped under the console's body limit.
        wanted = (
            {"CONSOLE_TRACE_RECEIVER": "true", "OTEL_BSP_SCHEDULE_DELAY": "1000"}
            if service == CONSOLE
            else {
                "OTEL_EXPORTER_OTLP_ENDPOINT": self.url(CONSOLE),
                "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
                "OTEL_BSP_SCHEDULE_DELAY": "1000",
            }
        )
        return {name: value for name, value in wanted.items() if name not in chosen}

    def log_path(self, service: str) -> Path:
        """Where the service's output goes (appended to across its restarts)."""
        return self.log_dir / f"{service}.log"

    def start_one(self, service: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path(service).open("ab")
        self.processes[service] = subprocess.Popen(
            # Started as the image starts it (sqjz-serve), on this machine's loopback.
            [
                sys.executable,
                "-m",
                "shared.serve",
                service,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.ports[service]),
            ],
            cwd=REPOSITORY_ROOT,
            env={
                **os.environ,
                **self.neighbours(service),
                **self.environment,
                "OTEL_SERVICE_NAME": service,
            },
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )

    async def start(self, timeout: float = 60.0) -> None:
        for service in self.ports:
            self.start_one(service)
        await asyncio.gather(*(self.wait_ready(service, timeout) for service in self.ports))

    async def wait_ready(self, service: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last_answer = "no answer"
        async with httpx.AsyncClient() as client:
            while True:
                process = self.processes[service]
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{service} exited with {process.returncode}; see {self.log_path(service)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"{self.url(service)}/readyz", timeout=2)
                    if response.status_code == 200:
                        return
                    last_answer = f"{response.status_code} {response.text}"
                if time.monotonic() > deadline:
                    # What it said last, and what it logged: the folder may not outlive the run.
                    raise TimeoutError(
                        f"{service} not ready after {timeout}s; /readyz: {last_answer}; "
                        f"its log ends:\n{self.log_tail(service)}"
                    )
                await asyncio.sleep(0.1)

    def log_tail(self, service: str, lines: int = 40) -> str:
        try:
            text = self.log_path(service).read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            return f"(unreadable: {error})"
        return "\n".join(text.splitlines()[-lines:])

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
        """SIGTERM to all at once, so they shut down in parallel; SIGKILL whoever lingers. The
        console goes after the others: they send it their last spans as they stop (a service
        waits for its spans to be taken, however long its exporter tries)."""
        self._stop_together(
            [process for service, process in self.processes.items() if service != CONSOLE],
            timeout,
        )
        if CONSOLE in self.processes:
            self._stop_together([self.processes[CONSOLE]], timeout)
        self.processes.clear()

    @staticmethod
    def _stop_together(processes: Sequence[subprocess.Popen[bytes]], timeout: float) -> None:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before restarting a service that died, and when to stop trying."""

    first_pause: float = 1.0
    longest_pause: float = 30.0
    crashes_allowed: int = 5
    within: float = 300.0

    def pause_after(self, crash_times: Sequence[float]) -> float | None:
        """Seconds to wait before the next start, given the monotonic times of the crashes so
        far (the latest last); None when the service crashed too often to go on."""
        latest = crash_times[-1]
        recent = [moment for moment in crash_times if latest - moment < self.within]
        if len(recent) >= self.crashes_allowed:
            return None
        pause: float = self.first_pause * 2 ** (len(recent) - 1)
        return min(pause, self.longest_pause)


def exit_words(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def say_on_terminal(message: str) -> None:
    print(f"!! {message}", file=sys.stderr, flush=True)


BROKER = "broker"


@dataclass
class Supervisor:
    """Keeps the services of `processes`, and the local `broker` if any, running while `run`
    runs (see the module docstring)."""

    processes: ServiceProcesses
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    say: Callable[[str], None] = say_on_terminal
    crashes: dict[str, list[float]] = field(default_factory=dict)
    broker: LocalBroker | None = None

    async def run(self) -> str | None:
        """Watch every service (and the broker) until cancelled; returns the one it gave up on
        (None when every service was stopped on purpose)."""
        watchers = [asyncio.create_task(self.watch(service)) for service in self.processes.ports]
        if self.broker is not None:
            watchers.append(asyncio.create_task(self.watch_broker(self.broker)))
        pending = set(watchers)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for watcher in done:
                    if (given_up := watcher.result()) is not None:
                        return given_up
            return None
        finally:
            for watcher in watchers:
                watcher.cancel()

    def tell(self, service: str, message: str, level: int = logging.WARNING) -> None:
        """On the terminal, in the runner's log and in the service's (or broker's) own log."""
        self.say(message)
        log.log(level, message)
        with self._log_of(service).open("a", encoding="utf-8") as own:
            own.write(f"[make run] {time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def _pause_or_give_up(self, name: str, returncode: int) -> float | None:
        """Count the crash; the pause before the restart, or None (said so) to give up."""
        crashes = self.crashes.setdefault(name, [])
        crashes.append(time.monotonic())
        pause = self.policy.pause_after(crashes)
        if pause is None:
            self.tell(
                name,
                f"{name} {exit_words(returncode)} — {self.policy.crashes_allowed} crashes "
                f"within {self.policy.within:.0f} s: GIVING UP, the system is not running. "
                f"See {self._log_of(name)}",
                logging.ERROR,
            )
        return pause

    def _log_of(self, name: str) -> Path:
        if name == BROKER and self.broker is not None:
            return self.broker.log_path
        return self.processes.log_path(name)

    async def watch_broker(self, broker: LocalBroker) -> str | None:
        """Restart the broker on its port whenever it dies: empty, a new cluster id, its
        topics made again. The services' clients reconnect to it by themselves."""
        while (process := broker.process) is not None:
            returncode = await asyncio.to_thread(process.wait)
            if broker.process is not process:
                continue  # restarted meanwhile on purpose
            pause = self._pause_or_give_up(BROKER, returncode)
            if pause is None:
                return BROKER
            self.tell(
                BROKER,
                f"broker {exit_words(returncode)}; restarting it empty on port {broker.port} in "
                f"{pause:.1f} s: the services publish again what it held. See {broker.log_path}",
            )
            await asyncio.sleep(pause)  # the backoff itself, not a synchronisation
            try:
                await broker.start()
            except (OSError, RuntimeError, TimeoutError) as failed:
                self.tell(BROKER, f"broker did not come back: {failed}")
                continue
            self.tell(
                BROKER,
                f"broker is running again (pid {broker.process.pid}, cluster {broker.cluster_id})",
                logging.INFO,
            )
        return None

    async def watch(self, service: str) -> str | None:
        """Restart `service` whenever it dies; its name once it is given up, None once it was
        stopped on purpose."""
        while (process := self.processes.processes.get(service)) is not None:
            # Waiting in a thread: the process's end wakes us, no polling.
            returncode = await asyncio.to_thread(process.wait)
            if self.processes.processes.get(service) is not process:
                continue  # stopped or replaced on purpose, not a crash
            pause = self._pause_or_give_up(service, returncode)
            if pause is None:
                return service
            crashes = self.crashes[service]
            log_file = self._log_of(service)
            self.tell(
                service,
                f"{service} {exit_words(returncode)}; restarting in {pause:.1f} s "
                f"(crash {len(crashes)}, giving up at {self.policy.crashes_allowed} "
                f"within {self.policy.within:.0f} s). See {log_file}",
            )
            await asyncio.sleep(pause)  # the backoff itself, not a synchronisation
            self.processes.start_one(service)
            try:
                await self.processes.wait_ready(service)
            except (RuntimeError, TimeoutError) as failed:
                self.tell(service, f"{service} did not come back: {failed}")
                continue
            self.tell(
                service,
                f"{service} is running again (pid {self.processes.processes[service].pid})",
                logging.INFO,
            )
        return None


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
    return {service: settings.port_of(service) for service in (*SERVICE_NAMES, CONSOLE)}


async def run_until_interrupted(settings: Settings) -> None:
    async with infrastructure(settings) as infra:
        services = ServiceProcesses(
            {**infra.environment(), **development_secrets(settings.local_data_dir)},
            default_ports(settings),
            settings.local_data_dir / "logs",
            traces_to_console=True,
        )
        supervising: asyncio.Task[str | None] | None = None
        try:
            await services.start()
            print_banner(settings, infra.environment(), services)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            supervising = asyncio.create_task(Supervisor(services, broker=infra.broker).run())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({supervising, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            print("\nStopping ...", flush=True)
            if supervising.done() and (given_up := supervising.result()) is not None:
                raise SystemExit(f"stopped: {given_up} kept crashing")
        finally:
            if supervising is not None:
                supervising.cancel()
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
        f"  Duty console  {services.url(CONSOLE)}   (log in as any party: the local key is in use)",
        *(
            ["                (each incident's page links its trace: 调用链)"]
            if services.tracing()
            else []
        ),
        "",
        *(
            f"  {service:<13} {services.url(service)}   (docs: {services.url(service)}/docs)"
            for service in services.ports
            if service != CONSOLE
        ),
        "",
        f"  PostgreSQL    {environment['DATABASE_URL']}",
        f"  Kafka         {environment['KAFKA_BOOTSTRAP_SERVERS']}",
        f"  alerts file   {settings.alerts_file}",
        f"  service logs  {services.log_dir}",
        "",
        "  Every endpoint but /healthz, /readyz and /metrics needs a bearer token. One for the",
        "  banner office (BLO), valid 8 hours; mint others with",
        "  `.venv/bin/sqjz-token mint --party SFS:150626102`:",
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


def main(argv: list[str] | None = None) -> None:
    import argparse

    argparse.ArgumentParser(
        prog="sqjz-run",
        description="Run the whole system on this machine: PostgreSQL and a Kafka broker (local "
        "ones unless DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS are set), the four services and "
        "the duty console; Ctrl-C stops everything. What `make run` runs.",
    ).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_until_interrupted(Settings()))


if __name__ == "__main__":
    main()
