"""Logging in: OpenID Connect (authorization code with PKCE) against the county's identity
provider, or, while the local development key is in use, a page to choose a party.

The pure parts (PKCE, the login's state, claims to a party and scopes) have no I/O; `Oidc`
talks to the provider.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from shared.domain.access import DEFAULT_SCOPES, Principal, may_be_principal
from shared.settings import Settings

LOGIN_COOKIE = "sqjz_login"
LOGIN_SECONDS = 600
KNOWN_SCOPES = frozenset({"incidents:write", "incidents:read", "audit:read", "pii:read"})


class LoginRefused(Exception):
    """Why a login cannot open a session, in words for the person trying."""


def pkce_pair() -> tuple[str, str]:
    """RFC 7636: a code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def safe_return_path(value: str | None) -> str:
    """Where to go after login: a path of the console only (no other site, no scheme)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


@dataclass(frozen=True)
class LoginState:
    """What the browser carries through the provider and back, signed by the console."""

    state: str
    nonce: str
    verifier: str
    return_to: str
    expires: float

    @classmethod
    def new(cls, return_to: str | None) -> LoginState:
        verifier, _ = pkce_pair()
        return cls(
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(24),
            verifier,
            safe_return_path(return_to),
            time.time() + LOGIN_SECONDS,
        )

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def seal(self, key: bytes) -> str:
        body = base64.urlsafe_b64encode(json.dumps(self.__dict__).encode()).decode()
        return f"{body}.{_mac(key, body)}"

    @classmethod
    def open(cls, key: bytes, sealed: str | None) -> LoginState:
        if not sealed or "." not in sealed:
            raise LoginRefused("登录已失效，请重新登录")
        body, mac = sealed.rsplit(".", 1)
        if not hmac.compare_digest(mac, _mac(key, body)):
            raise LoginRefused("登录状态无效，请重新登录")
        state = cls(**json.loads(base64.urlsafe_b64decode(body)))
        if state.expires < time.time():
            raise LoginRefused("登录已超时，请重新登录")
        return state


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def principal_from_claims(claims: dict[str, Any], settings: Settings) -> tuple[Principal, str]:
    """The party and scopes the identity provider's claims map to (settings), and the name to
    greet. A user whose claims name no party of ours is refused: no session, no default."""
    raw = claims.get(settings.console_oidc_party_claim)
    if isinstance(raw, list):
        raw = raw[0] if len(raw) == 1 else None
    party = settings.console_oidc_party_map.get(str(raw), raw) if raw is not None else None
    if not may_be_principal(party):
        raise LoginRefused("您的账号未配置所属单位，请联系系统管理员")
    roles = claims.get(settings.console_oidc_roles_claim) or []
    if isinstance(roles, str):
        roles = roles.split()
    granted: set[str] = set()
    for role in roles:
        granted.update(settings.console_oidc_role_scopes.get(str(role), "").split())
    kind = party.split(":", 1)[0]
    scopes = frozenset(granted & KNOWN_SCOPES) or frozenset(DEFAULT_SCOPES.get(kind, ()))
    subject = f"oidc:{claims['sub']}"
    name = str(
        claims.get(settings.console_oidc_name_claim) or claims.get("preferred_username") or ""
    )
    return Principal(subject, party, scopes), name or party


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None = None


@dataclass
class Oidc:
    """The county's identity provider, discovered once and its keys cached."""

    settings: Settings
    client: httpx.AsyncClient
    _provider: Provider | None = None
    _keys: dict[str, Any] = field(default_factory=dict)

    @property
    def redirect_uri(self) -> str:
        return self.settings.console_public_url.rstrip("/") + "/login/callback"

    async def provider(self) -> Provider:
        if self._provider is None:
            issuer = str(self.settings.console_oidc_issuer).rstrip("/")
            response = await self.client.get(f"{issuer}/.well-known/openid-configuration")
            response.raise_for_status()
            document = response.json()
            if document.get("issuer", "").rstrip("/") != issuer:
                raise LoginRefused("身份认证服务的配置与设置不符（issuer）")
            self._provider = Provider(
                document["issuer"],
                document["authorization_endpoint"],
                document["token_endpoint"],
                document["jwks_uri"],
                document.get("end_session_endpoint"),
            )
        return self._provider

    async def authorization_url(self, login: LoginState) -> str:
        provider = await self.provider()
        query = {
            "response_type": "code",
            "client_id": self.settings.console_oidc_client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.settings.console_oidc_scopes,
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": login.challenge,
            "code_challenge_method": "S256",
        }
        return f"{provider.authorization_endpoint}?{urlencode(query)}"

    async def claims_for(self, code: str, login: LoginState) -> dict[str, Any]:
        """Exchange the code (with the PKCE verifier) and verify the ID token it brings."""
        provider = await self.provider()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": login.verifier,
            "client_id": str(self.settings.console_oidc_client_id),
        }
        secret = self.settings.console_oidc_client_secret
        if secret is not None:
            # A confidential client: HTTP Basic with the client id and secret.
            auth = (str(self.settings.console_oidc_client_id), secret.get_secret_value())
            response = await self.client.post(provider.token_endpoint, data=form, auth=auth)
        else:
            response = await self.client.post(provider.token_endpoint, data=form)
        if response.status_code != 200:
            raise LoginRefused("身份认证服务拒绝了本次登录，请重新登录")
        id_token = response.json().get("id_token")
        if not isinstance(id_token, str):
            raise LoginRefused("身份认证服务未返回身份令牌")
        return await self._verified(id_token, login.nonce, provider)

    async def _verified(self, id_token: str, nonce: str, provider: Provider) -> dict[str, Any]:
        key_id = jwt.get_unverified_header(id_token).get("kid") or ""
        if key_id not in self._keys:
            response = await self.client.get(provider.jwks_uri)
            response.raise_for_status()
            self._keys = {
                key.key_id or "": key for key in jwt.PyJWKSet.from_dict(response.json()).keys
            }
        key = self._keys.get(key_id)
        if key is None:
            raise LoginRefused("身份令牌的签名密钥不可信")
        try:
            claims = jwt.decode(
                id_token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self.settings.console_oidc_client_id,
                issuer=provider.issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.PyJWTError as error:
            raise LoginRefused(f"身份令牌无效：{error}") from error
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise LoginRefused("身份令牌与本次登录不符（nonce）")
        return claims
