"""The console's way into the services: their REST APIs, as the logged-in user.

For each user the console signs a short-lived token naming the user's party and scopes, with
its own key, which the services trust as they trust any caller's; they keep deciding who may
read and do what (shared/domain/access.py). The console holds no right the user does not have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared.auth import DEV_KEY_ID, ensure_dev_keys, mint
from shared.domain.access import Principal
from shared.settings import SERVICE_NAMES, Settings


class ServiceAnswer(Exception):
    """A service said no (or could not answer): its problem+json, for the page to show."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or problem.get("title") or str(status))
        self.status = status
        self.problem = problem

    @property
    def detail(self) -> str:
        errors = self.problem.get("errors")
        if isinstance(errors, list) and errors:
            return "；".join(
                f"{error.get('field', '')}: {error.get('message', '')}"
                for error in errors
                if isinstance(error, dict)
            )
        return str(self.problem.get("detail") or self.problem.get("title") or self.status)


@dataclass(frozen=True)
class SigningKey:
    pem: bytes
    key_id: str

    @property
    def is_local_development_key(self) -> bool:
        return self.key_id == DEV_KEY_ID

    @classmethod
    def from_settings(cls, settings: Settings) -> SigningKey:
        if settings.console_signing_key_file is not None:
            return cls(
                settings.console_signing_key_file.read_bytes(), settings.console_signing_key_id
            )
        # The local development key beside the key set the services trust (shared.auth).
        folder = (
            settings.auth_jwks_file.parent
            if settings.auth_jwks_file is not None
            else Path(settings.local_data_dir) / "auth"
        )
        private_path, _ = ensure_dev_keys(folder)
        return cls(private_path.read_bytes(), DEV_KEY_ID)


@dataclass
class TokenMinter:
    """Tokens for users, each reused until a minute before it expires."""

    key: SigningKey
    issuer: str
    audience: str
    lifetime_seconds: int
    _tokens: dict[tuple[str, str, frozenset[str]], tuple[str, float]] = field(default_factory=dict)

    def token_for(self, principal: Principal) -> str:
        cache_key = (principal.subject, principal.party, principal.scopes)
        cached = self._tokens.get(cache_key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        token = mint(
            self.key.pem,
            principal.party,
            scopes=tuple(sorted(principal.scopes)),
            issuer=self.issuer,
            audience=self.audience,
            ttl_seconds=self.lifetime_seconds,
            key_id=self.key.key_id,
            subject=principal.subject,
        )
        self._tokens[cache_key] = (token, now + self.lifetime_seconds - 60)
        return token


@dataclass
class ServiceGateway:
    """One HTTP client for the four services, calling each as the given user."""

    client: httpx.AsyncClient
    base_urls: dict[str, str]
    minter: TokenMinter

    @classmethod
    def from_settings(cls, settings: Settings, minter: TokenMinter) -> ServiceGateway:
        return cls(
            httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)),
            {service: settings.url_of(service).rstrip("/") for service in SERVICE_NAMES},
            minter,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def request(
        self,
        user: Principal,
        method: str,
        service: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self.client.request(
                method,
                self.base_urls[service] + path,
                params={k: v for k, v in (params or {}).items() if v not in (None, "")},
                json=json,
                headers={
                    "Authorization": f"Bearer {self.minter.token_for(user)}",
                    **(headers or {}),
                },
            )
        except httpx.HTTPError as error:
            raise ServiceAnswer(
                503,
                {
                    "title": "服务暂时无法访问",
                    "detail": f"{service}: {error.__class__.__name__}",
                },
            ) from error
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase}
            raise ServiceAnswer(response.status_code, problem if isinstance(problem, dict) else {})
        return response

    async def get(self, user: Principal, service: str, path: str, **params: Any) -> Any:
        return (await self.request(user, "GET", service, path, params=params)).json()

    async def get_text(self, user: Principal, service: str, path: str, **params: Any) -> str:
        response = await self.request(
            user, "GET", service, path, params=params, headers={"Accept": "text/markdown"}
        )
        return response.text

    async def post(
        self,
        user: Principal,
        service: str,
        path: str,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = await self.request(user, "POST", service, path, json=body, headers=headers)
        return response.json() if response.content else None
