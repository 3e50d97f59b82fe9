"""The production overlay, run rather than read.

`kubectl kustomize deploy/k8s/overlays/prod` is rendered; each Deployment's and migration Job's
variables, Secrets and ConfigMaps are materialised as a kubelet would (tests/deploy/pods.py),
with the Secrets the operators create (docs/operations.md). The database is prepared as the
CloudNativePG cluster of the overlay prepares it (its bootstrap SQL and managed roles), the
migrations run as their Jobs with the owners' logins, and the four services and the duty console
start with exactly their configuration. Only what lies outside the cluster points at local
stand-ins: the database and broker addresses (the local broker speaks neither TLS nor SCRAM and
has no idempotent producer, so those Kafka settings give way to PLAINTEXT without idempotence),
the trace collector, the bureau's alert gateway and the county's identity provider. Then one
incident runs through to an acknowledged alert and a verified checkpoint, the console's tokens
are taken by the services, and the logins are shown to hold no more than their own rows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from jwt.algorithms import OKPAlgorithm
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.audit.merkle import verify_inclusion
from services.audit.note import Checkpoint, Signer, open_note
from services.console.gateway import ServiceGateway, SigningKey, TokenMinter
from services.notification.channels.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)
from shared.auth import ensure_dev_keys
from shared.domain.access import Principal
from shared.pii import new_key
from shared.settings import CONSOLE, REPOSITORY_ROOT, SERVICE_NAMES, Settings
from tests.deploy.pods import Container, PodWouldNotStart, Secrets, container_command, materialise
from tests.deploy.support import DEPLOYED, Resource, ingress_backend, named, of_kind, rendered
from tests.integration.helpers import violence_report
from tests.support import PATIENCE_SECONDS, PartyAuth, serving
from tools.localinfra import Infrastructure, free_port, infrastructure

# The bureau's alert gateway of the production directory, and the public host of the ingress.
ALERT_GATEWAY = "https://alerts.correction-emergency.example"
OPERATIONS = REPOSITORY_ROOT / "docs" / "operations.md"
NOTIFICATION = "notification-secrets"
# Settings of the overlay that need nothing from the people who deploy it.
PLAIN_SETTINGS = {
    "OTEL_SERVICE_NAME",
    "KAFKA_TOPIC_PARTITIONS",
    "KAFKA_TOPIC_REPLICATION_FACTOR",
    "KAFKA_FETCH_MAX_WAIT_MS",
    "KAFKA_IDLE_FETCH_INTERVAL_MS",
    "SHUTDOWN_GRACE_SECONDS",
    "POLICY_FILE",
    "ALERTS_FILE",
    "COUNTY_TIME_ZONE",
}


# --- what the operators create --------------------------------------------------------------


def self_signed_ca() -> str:
    """A certificate authority as Strimzi's cluster CA Secret holds one (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-ca")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Operators:
    """The Secrets of docs/operations.md, as the bureau's operators would create them."""

    work: Path
    origin: str = Settings().audit_log_origin
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        private_key, jwks = ensure_dev_keys(self.work / "identity-provider")
        self.token_key = private_key.read_bytes()
        # The console's own key; its public half joins the key set every service trusts.
        self.console_key_id = "console-2026-11"
        console_key = Ed25519PrivateKey.generate()
        self.console_key = console_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        key_set = json.loads(jwks.read_text(encoding="utf-8"))
        console_jwk = json.loads(OKPAlgorithm.to_jwk(console_key.public_key()))
        key_set["keys"].append({**console_jwk, "kid": self.console_key_id, "alg": "EdDSA"})
        self.signer = Signer.generate(self.origin)
        self.ack_secret = secrets.token_urlsafe(32)
        self.webhook_secret = secrets.token_urlsafe(32)
        self.secrets = {
            "jwt-keys": {"jwks.json": json.dumps(key_set)},
            "pii-key": {
                "PII_KEYS": json.dumps({"2026-11": base64.b64encode(os.urandom(32)).decode()}),
                "PII_CURRENT_KEY_ID": "2026-11",
            },
            "audit-signing-key": {"signing.key": self.signer.skey + "\n"},
            "audit-key-encryption": {
                "AUDIT_KEY_ENCRYPTION_KEYS": json.dumps({"2026-11": new_key()}),
                "AUDIT_KEY_ENCRYPTION_KEY_ID": "2026-11",
            },
            "notification-secrets": {
                "NOTIFICATION_ACK_SECRET": self.ack_secret,
                "NOTIFICATION_WEBHOOK_SECRET": self.webhook_secret,
            },
            "events-cluster-ca-cert": {"ca.crt": self_signed_ca()},
            "console-signing-key": {"signing.key": self.console_key, "key-id": self.console_key_id},
            "console-oidc": {"client-secret": secrets.token_urlsafe(32)},
        }
        for service in DEPLOYED:
            for login in (service, f"{service}_owner"):
                secret = f"correction-emergency-db-{login.replace('_', '-')}"
                self.secrets[secret] = {"username": login, "password": secrets.token_urlsafe(24)}
            # Strimzi writes the password of the KafkaUser into a Secret of the user's name.
            self.secrets[service] = {"password": secrets.token_urlsafe(24)}

    def without(self, name: str, key: str | None = None) -> Secrets:
        """These Secrets with one missing (or one key of it)."""
        if key is None:
            return {n: v for n, v in self.secrets.items() if n != name}
        return {**self.secrets, name: {k: v for k, v in self.secrets[name].items() if k != key}}


async def prepare_database(superuser_url: str, cluster: Resource, logins: Secrets) -> str:
    """What the CloudNativePG operator does for the overlay's Cluster: the `app` database, its
    bootstrap SQL, the managed roles with their passwords. Returns the database's URL."""
    initdb = cluster["spec"]["bootstrap"]["initdb"]
    server = make_url(superuser_url)
    connection = await asyncpg.connect(server.set(drivername="postgresql").render_as_string(False))
    try:
        await connection.execute(f'CREATE DATABASE "{initdb["database"]}"')
    finally:
        await connection.close()
    database = server.set(drivername="postgresql", database=initdb["database"])
    connection = await asyncpg.connect(database.render_as_string(hide_password=False))
    try:
        for statement in initdb["postInitApplicationSQL"]:
            await connection.execute(statement)
        for role in cluster["spec"]["managed"]["roles"]:
            password = logins[role["passwordSecret"]["name"]]["password"]
            assert "'" not in password
            inherit = "INHERIT" if role.get("inherit", True) else "NOINHERIT"
            login = "LOGIN" if role.get("login") else "NOLOGIN"
            await connection.execute(
                f"ALTER ROLE \"{role['name']}\" {login} {inherit} PASSWORD '{password}'"
            )
    finally:
        await connection.close()
    return database.render_as_string(hide_password=False)


# --- the outside world, stood in for ---------------------------------------------------------


@dataclass
class AlertGateway:
    """The bureau's alert gateway: takes every signed webhook, refuses unsigned ones."""

    secret: str
    port: int = field(default_factory=free_port)
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        expected = hmac.new(
            self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        if request.headers.get(SIGNATURE_HEADER) != f"sha256={expected}":
            self.refused += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        self.received.append({"path": request.url.path, **json.loads(body)})
        return JSONResponse({"ok": True})

    async def alert_for(self, incident_id: str, party: str) -> dict[str, Any]:
        async with asyncio.timeout(PATIENCE_SECONDS):
            while True:
                for alert in self.received:
                    if alert.get("incident_id") == incident_id and alert.get("party") == party:
                        return alert
                await asyncio.sleep(0.05)


@dataclass
class IdentityProvider:
    """The county's identity provider, as far as the console asks it before anybody logs in:
    its discovery document."""

    port: int = field(default_factory=free_port)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/keys",
            }
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/.well-known/openid-configuration", self.discovery, methods=["GET"])]
        )


def pointed_at_local(
    container: Container, infra: Infrastructure, database_url: str, issuer: str
) -> dict[str, str]:
    """The container's variables with the outside world replaced by local stand-ins."""
    environment = dict(container.environment)
    if "DATABASE_URL" in environment:
        local = make_url(database_url)
        given = make_url(environment["DATABASE_URL"])
        assert given.password is None, "passwords come from DATABASE_PASSWORD"
        # The local server's address (a Unix socket's folder and port are in its query), with
        # the container's login, database and options.
        pointed = local.set(
            drivername=given.drivername, username=given.username, database=given.database
        ).update_query_dict(given.query)
        environment["DATABASE_URL"] = pointed.render_as_string(hide_password=False)
    if "KAFKA_BOOTSTRAP_SERVERS" in environment:
        environment["KAFKA_BOOTSTRAP_SERVERS"] = infra.kafka_bootstrap_servers
        environment["KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"
        environment["KAFKA_ENABLE_IDEMPOTENCE"] = "false"
    environment.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    if "CONSOLE_OIDC_ISSUER" in environment:
        assert environment["CONSOLE_OIDC_ISSUER"].startswith("https://")
        environment["CONSOLE_OIDC_ISSUER"] = issuer
    return environment


def with_gateway(resources: list[Resource], gateway: AlertGateway) -> list[Resource]:
    # kustomize names a generated ConfigMap with a hash of its content, and so the pods.
    (config_map,) = (
        c for c in of_kind(resources, "ConfigMap") if c["metadata"]["name"].startswith("directory-")
    )
    directory = config_map["data"]
    assert ALERT_GATEWAY in directory["directory.yaml"]
    directory["directory.yaml"] = directory["directory.yaml"].replace(ALERT_GATEWAY, gateway.url)
    return resources


# --- the services, as their pods run them ----------------------------------------------------


def process_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """Only the pod's variables, plus what lets this machine find Python."""
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return {**keep, **environment}


@dataclass
class Pod:
    service: str
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_pod(container: Container, environment: Mapping[str, str], log: Path) -> Pod:
    """The container's command (the image's launcher with the service) on a free port of this
    machine's loopback."""
    command = container_command(container)
    assert command == ["sqjz-serve", container.name], command
    port = free_port()
    loopback = ["--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.serve", container.name, *loopback],
        cwd=REPOSITORY_ROOT,
        env=process_environment(environment),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return Pod(container.name, port, process, log)


async def wait_ready(pod: Pod) -> None:
    async with httpx.AsyncClient(timeout=5) as client, asyncio.timeout(PATIENCE_SECONDS):
        while True:
            if pod.process.poll() is not None:
                raise AssertionError(f"{pod.service} stopped at start:\n{pod.output()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{pod.url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


async def wait_stopped(pod: Pod) -> int:
    async with asyncio.timeout(PATIENCE_SECONDS):
        while pod.process.poll() is None:
            await asyncio.sleep(0.05)
    return pod.process.returncode


def stop(pods: Mapping[str, Pod]) -> None:
    for pod in pods.values():
        if pod.process.poll() is None:
            pod.process.terminate()
    deadline = time.monotonic() + 30
    for pod in pods.values():
        try:
            pod.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pod.process.kill()
            pod.process.wait()


def run_job(container: Container, environment: Mapping[str, str], log: Path) -> None:
    """The Job's command, a command the project installs (beside this interpreter)."""
    command = container_command(container)
    installed = Path(sys.executable).parent / command[0]
    assert command[0].startswith("sqjz-") and installed.is_file(), command
    with log.open("ab") as output:
        finished = subprocess.run(
            [str(installed), *command[1:]],
            cwd=REPOSITORY_ROOT,
            env=process_environment(environment),
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    assert finished.returncode == 0, log.read_text(encoding="utf-8", errors="replace")[-4000:]


@dataclass
class Production:
    resources: list[Resource]
    operators: Operators
    infra: Infrastructure
    database_url: str
    gateway: AlertGateway
    identity_provider: IdentityProvider
    work: Path

    def container(self, kind: str, name: str, secrets: Secrets | None = None) -> Container:
        workload = named(self.resources, kind, name)
        root = self.work / "pods" / f"{name}-{secrets_id(secrets)}"
        return materialise(self.resources, workload, secrets or self.operators.secrets, root)

    def environment(self, container: Container) -> dict[str, str]:
        return pointed_at_local(
            container, self.infra, self.database_url, self.identity_provider.issuer
        )

    def start(self, service: str, secrets: Secrets | None = None) -> Pod:
        container = self.container("Deployment", service, secrets)
        log = self.work / "logs" / f"{service}-{secrets_id(secrets)}.log"
        return start_pod(container, self.environment(container), log)

    def migrate(self, service: str) -> None:
        container = self.container("Job", f"{service}-migrate")
        run_job(
            container, self.environment(container), self.work / "logs" / f"{service}-migrate.log"
        )

    def login_url(self, login: str) -> str:
        password = self.operators.secrets[f"correction-emergency-db-{login.replace('_', '-')}"]
        url = make_url(self.database_url).set(username=login, password=password["password"])
        return url.render_as_string(hide_password=False)


def secrets_id(secrets: Secrets | None) -> str:
    return "as-shipped" if secrets is None else f"changed-{id(secrets)}"


@pytest.fixture(scope="module")
async def production(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Production]:
    work = tmp_path_factory.mktemp("production")
    work.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data folder
    (work / "logs").mkdir()
    operators = Operators(work)
    gateway = AlertGateway(operators.webhook_secret)
    resources = with_gateway(rendered("prod"), gateway)
    (cluster,) = of_kind(resources, "Cluster")
    gateway_app = Starlette(routes=[Route("/{path:path}", gateway.receive, methods=["POST"])])
    identity_provider = IdentityProvider()
    async with (
        infrastructure(Settings(), work, fresh=True) as infra,
        serving(gateway_app, gateway.port),
        serving(identity_provider.app(), identity_provider.port),
    ):
        database_url = await prepare_database(infra.database_url, cluster, operators.secrets)
        yield Production(
            resources, operators, infra, database_url, gateway, identity_provider, work
        )


@contextlib.contextmanager
def pods_of(production: Production) -> Iterator[dict[str, Pod]]:
    pods: dict[str, Pod] = {}
    try:
        for service in DEPLOYED:
            pods[service] = production.start(service)
        yield pods
    finally:
        stop(pods)


# --- the run ---------------------------------------------------------------------------------


async def test_one_incident_runs_to_an_acknowledged_alert_and_a_verified_checkpoint(
    production: Production,
) -> None:
    for service in DEPLOYED:
        production.migrate(service)
    auth = PartyAuth(production.operators.token_key)
    with pods_of(production) as pods:
        await asyncio.gather(*(wait_ready(pod) for pod in pods.values()))
        clients = {
            service: httpx.AsyncClient(
                base_url=pods[service].url, auth=auth, timeout=PATIENCE_SECONDS
            )
            for service in SERVICE_NAMES
        }
        async with contextlib.AsyncExitStack() as stack:
            for client in clients.values():
                await stack.enter_async_context(client)
            reported = await clients["intake"].post("/v1/incidents", json=violence_report())
            assert reported.status_code == 201, reported.text
            incident_id = reported.json()["id"]

            # 报警: the police station's duty contact gets a signed alert with a public link.
            alert = await production.gateway.alert_for(incident_id, "PPS:150626102")
            assert alert["path"] == "/duty/PPS-150626102"
            assert production.gateway.refused == 0
            link = urlsplit(alert["ack_url"])
            ingress = named(production.resources, "Ingress", "correction-emergency")
            assert (link.scheme, link.hostname) == ("https", ingress["spec"]["rules"][0]["host"])
            # The record link is the incident's page in the console, on the same host.
            record = urlsplit(alert["record_url"])
            assert (record.scheme, record.hostname) == ("https", link.hostname)
            assert record.path == f"/incidents/{incident_id}"
            assert ingress_backend(production.resources, record.path) == CONSOLE

            # The link, opened through the ingress, acknowledges on whichever replica serves it.
            service = ingress_backend(production.resources, link.path)
            assert service == "notification"
            async with httpx.AsyncClient(timeout=PATIENCE_SECONDS) as phone:
                acknowledged = await phone.post(f"{pods[service].url}{link.path}?{link.query}")
            assert acknowledged.status_code == 200, acknowledged.text

            proofs = await checkpoint_covering(
                clients["audit"], incident_id, "notification.acknowledged"
            )
            verifier = production.operators.signer.verifier
            note = open_note(proofs["checkpoint"]["note"], [verifier])
            checkpoint = Checkpoint.parse(note.text)
            assert checkpoint.origin == production.operators.origin
            for entry in proofs["entries"]:
                verify_inclusion(
                    entry["index"],
                    checkpoint.size,
                    base64.b64decode(entry["leaf_hash"]),
                    [base64.b64decode(step) for step in entry["proof"]],
                    checkpoint.root_hash,
                )
            await the_console_logs_in_through_the_identity_provider(production, pods[CONSOLE])
            await the_services_take_the_consoles_tokens(production, pods, incident_id)
    await each_login_holds_only_its_own_rows(production)


async def the_console_logs_in_through_the_identity_provider(
    production: Production, console: Pod
) -> None:
    """No page to choose a party: /login sends the browser to the identity provider, as the
    overlay's client, back to the public host."""
    async with httpx.AsyncClient(base_url=console.url, timeout=PATIENCE_SECONDS) as browser:
        assert (await browser.post("/login/local", data={"party": "BLO"})).status_code == 404
        login = await browser.get("/login", params={"next": "/duties"})
    assert login.status_code == 303, login.text
    target = urlsplit(login.headers["location"])
    assert f"{target.scheme}://{target.netloc}" == production.identity_provider.issuer
    query = parse_qs(target.query)
    environment = production.container("Deployment", CONSOLE).environment
    assert query["client_id"] == [environment["CONSOLE_OIDC_CLIENT_ID"]]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [f"{environment['CONSOLE_PUBLIC_URL']}/login/callback"]


async def the_services_take_the_consoles_tokens(
    production: Production, pods: Mapping[str, Pod], incident_id: str
) -> None:
    """The console's key, from its Secret, signs what the services accept through jwt-keys."""
    container = production.container("Deployment", CONSOLE)
    settings = Settings(
        console_signing_key_file=container.environment["CONSOLE_SIGNING_KEY_FILE"],
        console_signing_key_id=container.environment["CONSOLE_SIGNING_KEY_ID"],
        intake_url=pods["intake"].url,
        escalation_url=pods["escalation"].url,
        notification_url=pods["notification"].url,
        audit_url=pods["audit"].url,
    )
    key = SigningKey.from_settings(settings)
    assert key.key_id == production.operators.console_key_id
    assert not key.is_local_development_key
    minter = TokenMinter(key, settings.auth_issuer, settings.auth_audience, 600)
    gateway = ServiceGateway.from_settings(settings, minter)
    officer = Principal("oidc:duty-officer", "BLO", frozenset({"incidents:read", "audit:read"}))
    try:
        incident = await gateway.get(officer, "intake", f"/v1/incidents/{incident_id}")
        assert incident["id"] == incident_id
        obligations = await gateway.get(
            officer, "escalation", f"/v1/incidents/{incident_id}/obligations"
        )
        assert obligations
        timeline = await gateway.get(officer, "audit", f"/v1/incidents/{incident_id}/timeline")
        assert timeline
    finally:
        await gateway.close()


async def checkpoint_covering(
    audit: httpx.AsyncClient, incident_id: str, ce_type: str
) -> dict[str, Any]:
    """The incident's leaves with proofs, once a signed checkpoint covers them all and one of
    them is `ce_type`."""
    async with asyncio.timeout(PATIENCE_SECONDS):
        while True:
            response = await audit.get(f"/v1/incidents/{incident_id}/proofs")
            if response.status_code == 200:
                body = response.json()
                entries = body["entries"]
                if any(e["ce_type"] == ce_type for e in entries) and all(
                    e["covered"] for e in entries
                ):
                    return body
            await asyncio.sleep(0.2)


async def each_login_holds_only_its_own_rows(production: Production) -> None:
    """No service login can read another's schema, change a schema, or rewrite the log."""
    audit = await asyncpg.connect(production.login_url("audit"))
    try:
        assert await audit.fetchval("SELECT count(*) FROM audit.log_entries") > 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await audit.execute("ALTER TABLE audit.log_entries DISABLE TRIGGER ALL")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await audit.execute("TRUNCATE audit.log_entries")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await audit.execute("UPDATE audit.log_entries SET ce_type = 'forged' WHERE index = 0")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await audit.execute("SET ROLE audit_owner")
        await audit.execute("SET ROLE audit_writer")  # what the service does for each append
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await audit.execute("DELETE FROM audit.log_entries WHERE index = 0")
        await audit.execute("RESET ROLE")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await audit.fetch("SELECT * FROM intake.incidents LIMIT 1")
    finally:
        await audit.close()
    for service in DEPLOYED:
        connection = await asyncpg.connect(production.login_url(service))
        try:
            assert not await connection.fetchval(
                "SELECT count(*) FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner "
                "WHERE r.rolname = current_user"
            ), f"{service}'s login owns a schema"
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(f"CREATE TABLE {service}.intruder (id int)")
            for other in set(DEPLOYED) - {service}:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await connection.fetch(f"SELECT * FROM {other}.alembic_version")
        finally:
            await connection.close()


# --- a missing secret stops the start -------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "secret", "key", "named_setting"),
    [
        (
            "notification",
            "notification-secrets",
            "NOTIFICATION_ACK_SECRET",
            "NOTIFICATION_ACK_SECRET",
        ),
        (
            "notification",
            "notification-secrets",
            "NOTIFICATION_WEBHOOK_SECRET",
            "NOTIFICATION_WEBHOOK_SECRET",
        ),
        ("intake", "jwt-keys", None, "AUTH_JWKS_FILE"),
        ("audit", "audit-signing-key", None, "AUDIT_SIGNING_KEY_FILE"),
        ("escalation", "correction-emergency-db-escalation", "password", None),
        ("console", "console-signing-key", None, None),
        ("console", "console-oidc", "client-secret", None),
    ],
)
async def test_a_missing_secret_stops_the_service_at_start_naming_it(
    production: Production, service: str, secret: str, key: str | None, named_setting: str | None
) -> None:
    lacking = production.operators.without(secret, key)
    if named_setting is None:
        # A key the pod's variables reference: the kubelet itself refuses to start it.
        with pytest.raises(PodWouldNotStart, match=secret):
            production.start(service, lacking)
        return
    pod = production.start(service, lacking)
    try:
        assert await wait_stopped(pod) != 0
    finally:
        stop({service: pod})
    output = pod.output()
    assert f"{service} will not start in production" in output
    assert named_setting in output


def test_operations_lists_every_secret_and_setting_the_production_manifests_use(
    production: Production,
) -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    section = text[text.index("## Secrets and settings in production") :]
    for secret in production.operators.secrets:
        assert f"`{secret}`" in section, secret
    resources = production.resources
    settings = {
        name
        for workload in of_kind(resources, "Deployment") + of_kind(resources, "Job")
        for container in workload["spec"]["template"]["spec"]["containers"]
        for name in [variable["name"] for variable in container.get("env", [])]
        + [
            key
            for source in container.get("envFrom", [])
            if "secretRef" in source
            for key in production.operators.secrets[source["secretRef"]["name"]]
        ]
    }
    literals = next(
        c
        for c in of_kind(resources, "ConfigMap")
        if c["metadata"]["name"].startswith("correction-emergency-env")
    )["data"]
    for name in (settings | set(literals)) - PLAIN_SETTINGS:
        assert name in section, name
