"""Bearer JWTs (EdDSA or RS256) verified against configured public keys (a JWKS file).

Claims: `sub`, `party` (`SFS:150626102`, `BLO`, `PLATFORM`, `AUDITOR` ...), `scope` (space
separated), `exp`, `iss`, `aud`. `sqjz-token mint --party BLO` mints a token with
the local development key; `make run` prints one.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt.algorithms import OKPAlgorithm

from shared.domain.access import DEFAULT_SCOPES, Permission, Principal, decide, may_be_principal
from shared.problems import Problem
from shared.settings import Settings

ALGORITHMS = ["EdDSA", "RS256"]
DEV_KEY_ID = "local-dev"


def unauthorized(detail: str) -> Problem:
    return Problem(
        401,
        "Authentication required",
        detail,
        kind="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="correction-emergency"'},
    )


def algorithm_of(key: Any) -> str | None:
    """The one algorithm a public key verifies: a token naming another is refused before any
    signature check (no key is ever used with an algorithm it was not made for)."""
    if isinstance(key, Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, RSAPublicKey):
        return "RS256"
    return None


@dataclass(frozen=True)
class TokenVerifier:
    keys: dict[str, Any]  # kid → public key
    issuer: str
    audience: str
    # A stolen token is good until it expires: none may be minted to live longer than this.
    max_lifetime_seconds: int = 12 * 3600
    # Tokens that verified, by their whole text (signature included), with their principal and
    # expiry: a caller sends the same token with every request for hours, and checking its
    # signature costs as much as the rest of the edge. Only good tokens are remembered, at
    # most `remembered` (the oldest forgotten first): made-up ones are checked every time.
    remembered: int = 4096
    _verified: OrderedDict[str, tuple[Principal, float]] = field(
        default_factory=OrderedDict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        if settings.auth_jwks_file is None:
            # Nobody can be verified: every protected route answers 401, none is open.
            return cls(
                {}, settings.auth_issuer, settings.auth_audience, settings.auth_max_token_seconds
            )
        jwks = jwt.PyJWKSet.from_dict(json.loads(settings.auth_jwks_file.read_text("utf-8")))
        return cls(
            {key.key_id or "": key.key for key in jwks.keys},
            settings.auth_issuer,
            settings.auth_audience,
            settings.auth_max_token_seconds,
        )

    def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            principal, expires = known
            if time.time() < expires:
                return principal
            del self._verified[token]
        principal, expires = self._verified_claims(token)
        self._verified[token] = (principal, expires)
        if len(self._verified) > self.remembered:
            self._verified.popitem(last=False)
        return principal

    def _verified_claims(self, token: str) -> tuple[Principal, float]:
        """The token's principal and expiry, its signature and claims checked."""
        try:
            header = jwt.get_unverified_header(token)
            key = self.keys.get(header.get("kid") or "")
            if key is None:
                raise unauthorized("the token's key id is not one we trust")
            algorithm = algorithm_of(key)
            if algorithm is None or header.get("alg") != algorithm:
                raise unauthorized(
                    f"the token's algorithm {header.get('alg')!r} does not fit its key "
                    f"({algorithm or 'unsupported key type'})"
                )
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise unauthorized("the token has expired") from error
        except jwt.PyJWTError as error:
            raise unauthorized(f"invalid token: {error}") from error
        self._refuse_long_lived(claims)
        party = claims.get("party")
        if not may_be_principal(party):
            raise unauthorized("the token names no valid party")
        scopes = claims.get("scope", "")
        principal = Principal(str(claims["sub"]), party, frozenset(str(scopes).split()))
        return principal, float(claims["exp"])

    def _refuse_long_lived(self, claims: dict[str, Any]) -> None:
        issued = claims.get("iat")
        start = issued if isinstance(issued, int | float) else time.time()
        if claims["exp"] - start > self.max_lifetime_seconds:
            raise unauthorized(
                f"the token lives longer than the {self.max_lifetime_seconds} s allowed "
                "(AUTH_MAX_TOKEN_SECONDS): mint a shorter one"
            )


# Declares the scheme in the OpenAPI documents; errors stay ours (problem+json, 401).
bearer_scheme = HTTPBearer(
    auto_error=False, bearerFormat="JWT", description="EdDSA or RS256; claims party and scope"
)


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """FastAPI dependency: the caller, from `Authorization: Bearer <jwt>`; 401 otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise unauthorized("send Authorization: Bearer <token>")
    # Verified already when the rate limit chose the caller's bucket (shared.limits).
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        principal = request.app.state.token_verifier.verify(credentials.credentials.strip())
        request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(authenticate)]


def authorize(caller: Principal, permission: Permission, township: str | None = None) -> None:
    """403 problem+json unless the table of `shared.domain.access` allows it."""
    refusal = decide(caller, permission, township)
    if refusal is not None:
        raise Problem(403, "Forbidden", refusal.reason, kind="forbidden")


def speaks_for(caller: Principal, party: str, field: str) -> None:
    """A party records only its own reports and actions."""
    if party != caller.party:
        raise Problem(
            403,
            "Forbidden",
            f"{caller.party} may not speak for {party} ({field})",
            kind="forbidden",
        )


# --- local keys and tokens -------------------------------------------------------------------


def ensure_dev_keys(folder: Path) -> tuple[Path, Path]:
    """An Ed25519 key pair for local runs: (private PEM, JWKS of the public key)."""
    folder.mkdir(parents=True, exist_ok=True)
    private_path, jwks_path = folder / "signing-key.pem", folder / "jwks.json"
    if not private_path.exists():
        key = Ed25519PrivateKey.generate()
        private_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        private_path.chmod(0o600)
        public = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
        jwks_path.write_text(
            json.dumps({"keys": [{**public, "kid": DEV_KEY_ID, "alg": "EdDSA", "use": "sig"}]}),
            encoding="utf-8",
        )
    return private_path, jwks_path


def mint(
    private_key_pem: bytes,
    party: str,
    *,
    scopes: tuple[str, ...] | None = None,
    issuer: str,
    audience: str,
    ttl_seconds: int = 8 * 3600,
    key_id: str = DEV_KEY_ID,
    subject: str | None = None,
) -> str:
    kind = party.split(":", 1)[0]
    now = int(time.time())
    claims = {
        "sub": subject or f"{party}/{uuid.uuid4().hex[:8]}",
        "party": party,
        "scope": " ".join(scopes if scopes is not None else DEFAULT_SCOPES.get(kind, ())),
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey | RSAPrivateKey):
        raise ValueError(f"tokens are signed with Ed25519 or RSA keys, not {type(key).__name__}")
    algorithm = "EdDSA" if isinstance(key, Ed25519PrivateKey) else "RS256"
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": key_id})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="sqjz-token", description="Mint a token with the local signing key"
    )
    parser.add_argument("command", choices=["mint"])
    parser.add_argument("--party", required=True, help="SFS:150626102, BLO, PLATFORM, AUDITOR")
    parser.add_argument("--scope", action="append", help="repeat; default: the party's usual")
    parser.add_argument("--ttl", type=int, default=8 * 3600, help="seconds")
    arguments = parser.parse_args(argv)
    settings = Settings()
    private_path, _ = ensure_dev_keys(settings.local_data_dir / "auth")
    print(
        mint(
            private_path.read_bytes(),
            arguments.party,
            scopes=tuple(arguments.scope) if arguments.scope else None,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            ttl_seconds=arguments.ttl,
        )
    )


if __name__ == "__main__":
    main()
