"""The duty console on the running system: login, sessions and CSRF, what each party sees, and
live updates only of what it may see; OpenID Connect against a stand-in identity provider."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from shared.settings import CONSOLE
from tests.integration.helpers import eventually, report, subject_id
from tests.support import PATIENCE_SECONDS, log_in, serving
from tools.devrun import ServiceProcesses, development_secrets
from tools.localinfra import Infrastructure, free_port

TUKE, GALUTU = "150626102", "150626100"


async def console_as(
    console_url: str, party: str, *, personal_data: bool = False
) -> httpx.AsyncClient:
    """A browser-like client logged in to the console as `party` (local login)."""
    client = httpx.AsyncClient(base_url=console_url, timeout=PATIENCE_SECONDS)
    await log_in(client, party, personal_data=personal_data)
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


@pytest.fixture
async def sfs_tuke(system: ServiceProcesses) -> AsyncIterator[httpx.AsyncClient]:
    client = await console_as(system.url(CONSOLE), f"SFS:{TUKE}")
    yield client
    await client.aclose()


async def test_every_page_sends_a_visitor_without_a_session_to_the_login(system) -> None:
    async with httpx.AsyncClient(base_url=system.url(CONSOLE)) as anonymous:
        board = await anonymous.get("/")
        assert board.status_code == 303
        assert board.headers["location"] == "/login?next=/"
        incident = await anonymous.get(f"/incidents/{uuid.uuid4()}")
        assert incident.headers["location"].startswith("/login?next=/incidents/")
        live = await anonymous.get("/live")
        assert live.status_code == 401
        assert live.headers["content-type"].startswith("application/problem+json")
        login = await anonymous.get("/login")
        assert login.status_code == 200 and "本地登录" in login.text


async def test_the_session_cookie_is_http_only_and_same_site_and_logout_ends_it(system) -> None:
    async with httpx.AsyncClient(base_url=system.url(CONSOLE)) as browser:
        response = await browser.post(
            "/login/local",
            data={"party": f"SFS:{TUKE}", "name": "李明", "next": "/duties"},
            headers={"Origin": system.url(CONSOLE)},
        )
        assert response.status_code == 303 and response.headers["location"] == "/duties"
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        board = await browser.get("/")
        assert board.status_code == 200 and "图克镇司法所" in board.text and "李明" in board.text
        logout = await browser.post("/logout", data={"csrf_token": csrf_of(board.text)})
        assert logout.status_code == 303
        assert (await browser.get("/")).status_code == 303


async def test_a_form_without_its_csrf_token_or_from_another_site_does_nothing(
    system, sfs_tuke
) -> None:
    board = await sfs_tuke.get("/")
    token = csrf_of(board.text)
    form = {
        "category": "VIOLENCE",
        "phase": "IN_PROGRESS",
        "subject_id": subject_id(),
        "subject_name": "王某某",
        "reporter_name": "李明",
    }
    without = await sfs_tuke.post("/incidents", data=form)
    assert without.status_code == 403 and without.json()["type"].endswith("/csrf")
    wrong = await sfs_tuke.post("/incidents", data={**form, "csrf_token": token[:-1] + "x"})
    assert wrong.status_code == 403
    foreign = await sfs_tuke.post(
        "/incidents", data={**form, "csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    assert "csrf" in foreign.json()["type"]


async def test_a_local_login_page_is_there_only_while_the_local_key_is_in_use(system) -> None:
    """The system under test signs with the local development key: the page is there. A
    console with a key of its own has none (test_openid_connect... below)."""
    async with httpx.AsyncClient(base_url=system.url(CONSOLE)) as anonymous:
        assert "本地登录" in (await anonymous.get("/login")).text


async def test_a_sfs_reports_through_the_form_and_reads_the_incident_with_its_duties(
    system, sfs_tuke
) -> None:
    token = csrf_of((await sfs_tuke.get("/incidents/new")).text)
    created = await sfs_tuke.post(
        "/incidents",
        data={
            "csrf_token": token,
            "category": "VIOLENCE",
            "phase": "IN_PROGRESS",
            "township": TUKE,
            "subject_id": subject_id(),
            "subject_name": "王某某",
            "summary": "持刀与人冲突",
            "reporter_name": "李明",
            "reporter_phone": "13900000000",
        },
        headers={"Origin": system.url(CONSOLE)},
    )
    assert created.status_code == 303, created.text
    location = created.headers["location"]
    assert location.startswith("/incidents/") and "said=" in location
    page = await eventually(
        lambda: sfs_tuke.get(location.split("?")[0]),
        lambda response: response.status_code == 200 and "data-obligation=" in response.text,
    )
    assert "暴力犯罪" in page.text and "正在实施" in page.text
    assert "持刀与人冲突" in page.text
    assert "王*" in page.text and "王某某" not in page.text  # masked without pii:read
    assert re.search(r'class="badge rule">R\d+', page.text)
    assert "依据" in page.text


async def test_a_form_the_service_refuses_comes_back_with_the_reason(system, sfs_tuke) -> None:
    token = csrf_of((await sfs_tuke.get("/incidents/new")).text)
    refused = await sfs_tuke.post(
        "/incidents",
        data={
            "csrf_token": token,
            "category": "VIOLENCE",
            "phase": "IN_PROGRESS",
            "subject_id": subject_id(),
            "subject_name": "王某某",
        },  # no reporter name
    )
    assert refused.status_code == 422
    assert 'class="error"' in refused.text and "reporter" in refused.text


async def test_another_township_cannot_open_the_incident(system, clients, sfs_tuke) -> None:
    incident_id = await report(clients)
    other = await console_as(system.url(CONSOLE), f"SFS:{GALUTU}")
    try:
        refused = await other.get(f"/incidents/{incident_id}")
        assert refused.status_code == 403 and "无法查看此事件" in refused.text
        assert "持刀" not in refused.text
        mine = await sfs_tuke.get(f"/incidents/{incident_id}")
        assert mine.status_code == 200
    finally:
        await other.aclose()


class LiveStream:
    """An open /live stream, its events collected as they come."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.changes: list[dict[str, Any]] = []
        self.ready = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async with self.client.stream("GET", "/live") as response:
            assert response.status_code == 200
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[len("event: ") :]
                elif line.startswith("data: ") and event == "ready":
                    self.ready.set()
                elif line.startswith("data: ") and event == "change":
                    self.changes.append(json.loads(line[len("data: ") :]))

    def about(self, incident_id: str) -> list[str]:
        return [c["type"] for c in self.changes if c["incident_id"] == incident_id]

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_live_updates_reach_only_pages_that_may_see_the_incident(system, clients) -> None:
    console = system.url(CONSOLE)
    tuke, galutu, banner = (
        await console_as(console, f"TCG:{TUKE}"),
        await console_as(console, f"SFS:{GALUTU}"),
        await console_as(console, "BLO"),
    )
    streams = [LiveStream(tuke), LiveStream(galutu), LiveStream(banner)]
    try:
        async with asyncio.timeout(PATIENCE_SECONDS):
            for stream in streams:
                await stream.ready.wait()
        await eventually(lambda: tuke.get("/readyz"), lambda response: response.status_code == 200)
        in_tuke = await report(clients)
        await eventually(
            lambda: asyncio.sleep(0, streams[0].about(in_tuke)),
            lambda types: "incident.reported" in types and "obligation.created" in types,
        )
        await eventually(
            lambda: asyncio.sleep(0, streams[2].about(in_tuke)),
            lambda types: "incident.reported" in types,
        )
        # Every event of the 图克镇 incident was handed out before the 嘎鲁图镇 one was even
        # reported: the first the 嘎鲁图镇 page hears of is its own.
        in_galutu = await report(
            clients, township="嘎鲁图镇", reporter={"party": f"SFS:{GALUTU}", "name": "张三"}
        )
        await eventually(
            lambda: asyncio.sleep(0, streams[1].changes),
            lambda changes: any(c["incident_id"] == in_galutu for c in changes),
        )
        assert streams[1].changes[0]["incident_id"] == in_galutu
        assert not streams[1].about(in_tuke)
    finally:
        for stream in streams:
            await stream.close()
        for client in (tuke, galutu, banner):
            await client.aclose()


# --- OpenID Connect -------------------------------------------------------------------------


class IdentityProvider:
    """A stand-in for the county's identity provider: discovery, authorize (the user consents
    at once), token (checks the PKCE verifier), JWKS. Its users are `users` (claims by login)."""

    def __init__(self, port: int, client_id: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.client_id = client_id
        self.key = Ed25519PrivateKey.generate()
        self.codes: dict[str, dict[str, Any]] = {}
        self.user: dict[str, Any] = {}
        self.checked_verifiers: list[str] = []

    def app(self) -> Starlette:
        async def discovery(_: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.url,
                    "authorization_endpoint": f"{self.url}/authorize",
                    "token_endpoint": f"{self.url}/token",
                    "jwks_uri": f"{self.url}/jwks",
                }
            )

        async def authorize(request: Request) -> Response:
            query = request.query_params
            assert query["client_id"] == self.client_id
            assert query["code_challenge_method"] == "S256"
            code = uuid.uuid4().hex
            self.codes[code] = dict(query)
            return RedirectResponse(
                f"{query['redirect_uri']}?code={code}&state={query['state']}", status_code=302
            )

        async def token(request: Request) -> Response:
            form = await request.form()
            asked = self.codes.pop(str(form["code"]), None)
            if asked is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            digest = hashlib.sha256(str(form["code_verifier"]).encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if challenge != asked["code_challenge"]:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            self.checked_verifiers.append(str(form["code_verifier"]))
            now = int(time.time())
            id_token = jwt.encode(
                {
                    "iss": self.url,
                    "aud": self.client_id,
                    "iat": now,
                    "exp": now + 300,
                    "nonce": asked["nonce"],
                    **self.user,
                },
                self.key,
                algorithm="EdDSA",
                headers={"kid": "idp-1"},
            )
            return JSONResponse({"access_token": "opaque", "id_token": id_token})

        async def jwks(_: Request) -> Response:
            public = json.loads(OKPAlgorithm.to_jwk(self.key.public_key()))
            return JSONResponse({"keys": [{**public, "kid": "idp-1", "alg": "EdDSA"}]})

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/authorize", authorize),
                Route("/token", token, methods=["POST"]),
                Route("/jwks", jwks),
            ]
        )


def another_console(
    infra: Infrastructure,
    work_dir: Path,
    system: ServiceProcesses,
    webhook_directory: Path,
    port: int,
    logs: str,
    environment: dict[str, str] | None = None,
) -> ServiceProcesses:
    """A console process of its own on `port`, in front of the suite's services."""
    return ServiceProcesses(
        environment={
            **infra.environment(),
            **development_secrets(work_dir),
            "DIRECTORY_FILE": str(webhook_directory),
            **{f"{s.upper()}_URL": system.url(s) for s in system.ports if s != CONSOLE},
            **(environment or {}),
        },
        ports={CONSOLE: port},
        log_dir=work_dir / logs,
    )


@pytest.fixture(scope="module")
async def oidc_console(
    infra: Infrastructure, work_dir: Path, system: ServiceProcesses, webhook_directory: Path
) -> AsyncIterator[tuple[str, IdentityProvider]]:
    """A second console of the same system, logging people in through the identity provider
    and signing with a key of its own that the services do not trust (so no token it mints is
    ever good at a service unless operations add its key to their key set)."""
    provider = IdentityProvider(free_port(), "sqjz-console")
    key_file = work_dir / "console-oidc-key.pem"
    from cryptography.hazmat.primitives import serialization

    key_file.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    port = free_port()
    processes = another_console(
        infra,
        work_dir,
        system,
        webhook_directory,
        port,
        "logs-oidc",
        {
            "CONSOLE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "CONSOLE_SIGNING_KEY_FILE": str(key_file),
            "CONSOLE_SIGNING_KEY_ID": "console-oidc-test",
            "CONSOLE_OIDC_ISSUER": provider.url,
            "CONSOLE_OIDC_CLIENT_ID": provider.client_id,
            "CONSOLE_OIDC_PARTY_MAP": json.dumps({"tuke-tcg": f"TCG:{TUKE}"}),
            "CONSOLE_OIDC_ROLE_SCOPES": json.dumps({"reader": "incidents:read"}),
        },
    )
    async with serving(provider.app(), int(provider.url.rsplit(":", 1)[1])):
        await processes.start()
        try:
            yield processes.url(CONSOLE), provider
        finally:
            processes.stop()


async def test_openid_connect_login_with_pkce_maps_the_claims_to_a_party_and_scopes(
    oidc_console,
) -> None:
    console_url, provider = oidc_console
    provider.user = {"sub": "u-1001", "party": "tuke-tcg", "roles": ["reader"], "name": "赵六"}
    async with httpx.AsyncClient(base_url=console_url, follow_redirects=True) as browser:
        assert "本地登录" not in (await browser.get("/login")).text
        board = await browser.get("/")
        assert board.status_code == 200, board.text
        assert str(board.url).startswith(console_url)
        assert "图克镇社区矫正突发事件应急处置指挥小组" in board.text and "赵六" in board.text
        assert provider.checked_verifiers, "the token endpoint never saw a PKCE verifier"
        local = await browser.post(
            "/login/local", data={"party": "BLO"}, headers={"Origin": console_url}
        )
        assert local.status_code == 404


async def test_openid_connect_refuses_a_user_whose_claims_name_no_party(oidc_console) -> None:
    console_url, provider = oidc_console
    provider.user = {"sub": "u-1002", "name": "无单位"}
    async with httpx.AsyncClient(base_url=console_url, follow_redirects=True) as browser:
        refused = await browser.get("/")
        assert refused.status_code == 403
        assert "未配置所属单位" in refused.text
        assert not [c for c in browser.cookies.jar if c.name == "sqjz_session"]


async def test_openid_connect_refuses_a_callback_that_is_not_this_browsers_login(
    oidc_console,
) -> None:
    console_url, provider = oidc_console
    provider.user = {"sub": "u-1003", "party": "tuke-tcg"}
    async with httpx.AsyncClient(base_url=console_url) as browser:
        started = await browser.get("/login")
        authorize = urlsplit(started.headers["location"])
        state = parse_qs(authorize.query)["state"][0]
    async with httpx.AsyncClient(base_url=console_url) as another_browser:
        forged = await another_browser.get(f"/login/callback?code=x&state={state}")
        assert forged.status_code == 403
        assert "sqjz_session" not in forged.headers.get("set-cookie", "")


async def test_the_banner_office_reads_drill_compliance_and_the_investigation_report(
    system, clients
) -> None:
    incident_id = await report(clients)
    banner = await console_as(system.url(CONSOLE), "BLO")
    try:
        drills = await banner.get("/drills")
        assert drills.status_code == 200
        assert "图克镇司法所" in drills.text and "R16" in drills.text
        investigation = await eventually(
            lambda: banner.get(f"/incidents/{incident_id}/investigation"),
            lambda response: 'id="investigation-report"' in response.text,
        )
        assert "调查报告" in investigation.text
    finally:
        await banner.aclose()


async def test_a_console_stops_on_sigterm_though_browsers_keep_their_live_streams_open(
    infra: Infrastructure, work_dir: Path, system: ServiceProcesses, webhook_directory: Path
) -> None:
    processes = another_console(
        infra, work_dir, system, webhook_directory, free_port(), "logs-stopping-console"
    )
    await processes.start()
    try:
        browser = await console_as(processes.url(CONSOLE), "BLO")
        stream = LiveStream(browser)
        async with asyncio.timeout(PATIENCE_SECONDS):
            await stream.ready.wait()
        process = processes.processes[CONSOLE]
        await asyncio.to_thread(processes.stop_one, CONSOLE)
        # uvicorn ends by raising the signal it caught again, once it has shut down.
        assert process.returncode in (0, -signal.SIGTERM), "the console had to be killed"
        await stream.close()
        await browser.aclose()
    finally:
        processes.stop()


async def test_the_police_acknowledge_their_alert_on_the_console_and_nobody_else_may(
    system, clients
) -> None:
    incident_id = await report(clients)
    police = f"PPS:{TUKE}"
    alerts = await eventually(
        lambda: clients["notification"].get(
            "/v1/notifications", params={"incident_id": incident_id, "party": police}
        ),
        lambda response: response.status_code == 200 and response.json()["items"],
    )
    alert_id = alerts.json()["items"][0]["id"]
    refused = await clients["notification"].post(
        f"/v1/notifications/{alert_id}/acknowledgement", headers={"X-Act-As": f"SFS:{TUKE}"}
    )
    assert refused.status_code == 403, refused.text

    console = await console_as(system.url(CONSOLE), police)
    try:
        duties = await eventually(
            lambda: console.get("/duties"),
            lambda response: f'data-notification="{alert_id}"' in response.text,
        )
        acknowledged = await console.post(
            f"/notifications/{alert_id}/acknowledge",
            data={"csrf_token": csrf_of(duties.text), "return_to": "/duties"},
        )
        assert acknowledged.status_code == 303
        assert "said=" in acknowledged.headers["location"]
    finally:
        await console.aclose()
    alert = (await clients["notification"].get(f"/v1/notifications/{alert_id}")).json()
    assert alert["status"] == "ACKNOWLEDGED"
    assert alert["acknowledged_by"].startswith("值班台（local:")
