"""E-mail through an SMTP server (aiosmtplib): the full text, the title as subject.

SMTP replies say what to do: 4xx is "try again later", 5xx is final (no such mailbox, refused),
so a 5xx moves on to the party's next contact. Connection failures and timeouts are retried.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib

from services.notification.channels import DeliveryResult
from services.notification.templates import Form
from shared.domain.directory import Contact


def build_email(message: dict[str, Any], sender: str, recipient: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = recipient
    email["Subject"] = message["title"]
    email["Date"] = formatdate(usegmt=True)
    email["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    email["X-Notification-Id"] = str(message["notification_id"])
    email["X-Idempotency-Key"] = str(message.get("idempotency_key") or message["notification_id"])
    email.set_content(message["text"])
    return email


def _refused(code: int, text: str) -> DeliveryResult:
    return DeliveryResult(False, code, f"SMTP {code}: {text}", retryable=400 <= code < 500)


class EmailChannel:
    name = "email"
    form = Form.FULL

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        tls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._starttls = starttls
        self._tls = tls
        self._timeout = timeout

    async def send(self, message: dict[str, Any], contact: Contact) -> DeliveryResult:
        if not contact.address or "@" not in contact.address:
            return DeliveryResult(False, error="email contact has no address")
        try:
            await aiosmtplib.send(
                build_email(message, self._sender, contact.address),
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                use_tls=self._tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            refused = error.recipients[0]
            return _refused(refused.code, refused.message)
        except aiosmtplib.SMTPResponseException as error:
            return _refused(error.code, error.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            return DeliveryResult(
                False, error=f"{error.__class__.__name__}: {error}", retryable=True
            )
        return DeliveryResult(True, 250)

    async def close(self) -> None:
        return None
