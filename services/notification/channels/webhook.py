"""JSON POST of the alert to a subscriber's URL (the county public-security platform, ...).

Signature scheme, so a subscriber can tell our alerts from forgeries and replays:

    X-Alert-Timestamp: <Unix seconds when sent>
    X-Alert-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw request body>")>
    Idempotency-Key:   <one id per (alert, contact)>

The receiver recomputes the HMAC over the timestamp header, a dot and the exact body bytes,
compares in constant time, and refuses a timestamp more than five minutes off its clock. The
secret is the contact address's entry in `NOTIFICATION_CONTACT_SECRETS`, else
`NOTIFICATION_WEBHOOK_SECRET`; with neither, the alert goes unsigned. We deliver at least once
to a gateway (a crash between its answer and our record sends again), so a subscriber drops a
repeated `Idempotency-Key`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from services.notification.channels import DeliveryResult
from services.notification.channels.http import json_body, send_request
from services.notification.templates import Form
from shared.domain.directory import Contact

TIMESTAMP_HEADER = "X-Alert-Timestamp"
SIGNATURE_HEADER = "X-Alert-Signature"

SecretOf = Callable[[str], bytes | None]


def webhook_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookChannel:
    name = "webhook"
    form = Form.FULL

    def __init__(
        self,
        client: aiohttp.ClientSession,
        secret_of: SecretOf = lambda _address: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._secret_of = secret_of
        self._clock = clock

    async def send(self, message: dict[str, Any], contact: Contact) -> DeliveryResult:
        if not contact.address:
            return DeliveryResult(False, error="webhook contact has no URL")
        body = json_body(message)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": str(message.get("idempotency_key") or message["notification_id"]),
        }
        secret = self._secret_of(contact.address)
        if secret is not None:
            timestamp = str(int(self._clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = webhook_signature(secret, timestamp, body)
        return await send_request(
            self._client, "POST", contact.address, content=body, headers=headers
        )

    async def close(self) -> None:
        await self._client.close()
