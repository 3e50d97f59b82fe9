"""Signed, expiring acknowledgement tokens, one per (alert, contact).

A token is `1.<contact index>.<expiry, Unix seconds>.<signature>`, where the signature is
base64url (unpadded) HMAC-SHA256 under `NOTIFICATION_ACK_SECRET` over
`<notification id>.1.<contact index>.<expiry>`. The notification id travels in the link's path,
so the token stays short enough for an SMS while still binding the alert; the contact index says
who acknowledged. Nothing is stored: any replica with the key can check a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

VERSION = "1"


class AckTokenError(Exception):
    """A token we did not issue or cannot read (`expired` False), or one past its expiry."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.expired = expired


@dataclass(frozen=True)
class AckClaim:
    contact_index: int
    expires_at: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class AckSigner:
    key: bytes
    ttl_seconds: int
    public_base_url: str

    @classmethod
    def with_random_key(cls, ttl_seconds: int, public_base_url: str) -> AckSigner:
        return cls(secrets.token_bytes(32), ttl_seconds, public_base_url)

    def _signature(self, notification_id: UUID, payload: str) -> str:
        message = f"{notification_id}.{payload}".encode()
        return _b64(hmac.new(self.key, message, hashlib.sha256).digest())

    def token(self, notification_id: UUID, contact_index: int, expires_at: datetime) -> str:
        payload = f"{VERSION}.{contact_index}.{int(expires_at.timestamp())}"
        return f"{payload}.{self._signature(notification_id, payload)}"

    def link(self, notification_id: UUID, contact_index: int, now: datetime) -> str:
        expires_at = datetime.fromtimestamp(now.timestamp() + self.ttl_seconds, UTC)
        token = self.token(notification_id, contact_index, expires_at)
        base = self.public_base_url.rstrip("/")
        return f"{base}/v1/notifications/{notification_id}/ack?token={token}"

    def verify(self, notification_id: UUID, token: str, now: datetime) -> AckClaim:
        """The claim of a token we issued for this alert; the signature is checked first, so a
        forged token is refused as forged even when its stated expiry has passed."""
        parts = token.strip().split(".")
        if len(parts) != 4 or parts[0] != VERSION:
            raise AckTokenError("not an acknowledgement token")
        payload, signature = ".".join(parts[:3]), parts[3]
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
        expected = self._signature(notification_id, payload).encode()
        if not hmac.compare_digest(signature.encode(), expected):
            raise AckTokenError("signature does not match this notification")
        try:
            contact_index, expires = int(parts[1]), int(parts[2])
        except ValueError as error:  # signed by us, so only a key shared with a bad issuer
            raise AckTokenError("malformed token") from error
        expires_at = datetime.fromtimestamp(expires, UTC)
        if now >= expires_at:
            raise AckTokenError(f"token expired at {expires_at.isoformat()}", expired=True)
        return AckClaim(contact_index, expires_at)
