"""Who is logged in: sessions held server-side, a cookie naming one, a CSRF token per session.

The cookie carries only a random id; the table keeps its SHA-256, the party, scopes and the
session's CSRF token. Every form and every script's POST sends that token back, and a POST
whose `Origin` is another site is refused before the token is even compared.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.console.models import sessions as sessions_table
from shared.domain.access import Principal

SESSION_COOKIE = "sqjz_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    display_name: str
    csrf_token: str
    login_method: str
    expires_at: datetime


def _hash(cookie_value: str) -> bytes:
    return hashlib.sha256(cookie_value.encode()).digest()


def same_origin(origin: str | None, public_url: str, request_host: str | None) -> bool:
    """Whether a POST's `Origin` is the console itself: its public URL or the host the request
    came to (a browser always sends `Origin` on a cross-site POST; none sent is a same-site
    form of an older browser, left to the CSRF token)."""
    if origin is None:
        return True
    if origin == "null":
        return False
    seen = urlsplit(origin)
    own = urlsplit(public_url)
    if (seen.scheme, seen.netloc) == (own.scheme, own.netloc):
        return True
    return request_host is not None and seen.netloc == request_host


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True)
class SessionStore:
    database: async_sessionmaker[AsyncSession]
    lifetime: timedelta

    async def open(
        self, principal: Principal, display_name: str, login_method: str
    ) -> tuple[str, ConsoleSession]:
        """A new session: the cookie's value (said once, kept nowhere) and what it holds."""
        cookie_value = secrets.token_urlsafe(32)
        session = ConsoleSession(
            principal,
            display_name,
            secrets.token_urlsafe(32),
            login_method,
            datetime.now(UTC) + self.lifetime,
        )
        async with self.database() as db, db.begin():
            await db.execute(
                insert(sessions_table).values(
                    id_hash=_hash(cookie_value),
                    subject=principal.subject,
                    party=principal.party,
                    scopes=" ".join(sorted(principal.scopes)),
                    display_name=display_name,
                    csrf_token=session.csrf_token,
                    login_method=login_method,
                    expires_at=session.expires_at,
                )
            )
        return cookie_value, session

    async def find(self, cookie_value: str | None) -> ConsoleSession | None:
        if not cookie_value or len(cookie_value) > 200:
            return None
        async with self.database() as db:
            row = (
                await db.execute(
                    select(sessions_table).where(
                        sessions_table.c.id_hash == _hash(cookie_value),
                        sessions_table.c.expires_at > datetime.now(UTC),
                    )
                )
            ).one_or_none()
        if row is None:
            return None
        return ConsoleSession(
            Principal(row.subject, row.party, frozenset(row.scopes.split())),
            row.display_name,
            row.csrf_token,
            row.login_method,
            row.expires_at,
        )

    async def close(self, cookie_value: str | None) -> None:
        if not cookie_value:
            return
        async with self.database() as db, db.begin():
            await db.execute(
                delete(sessions_table).where(sessions_table.c.id_hash == _hash(cookie_value))
            )
