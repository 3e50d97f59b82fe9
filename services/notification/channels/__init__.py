"""Delivery channels as plugins behind one small interface; each contact names its channel.

A channel sends one message (the alert rendered in the channel's `form`) to one contact and says
what happened: delivered, or failed and whether trying again may help (`retryable`, with the
gateway's `retry_after` when it gave one). Channels never retry, sleep or touch the database:
retries, rate limits and the circuit breaker are the dispatcher's, the same for every channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from services.notification.templates import Form
from shared.domain.directory import Contact


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    status_code: int | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None
    gateway_code: str | None = None


class Channel(Protocol):
    name: str
    form: Form

    async def send(self, message: dict[str, Any], contact: Contact) -> DeliveryResult: ...

    async def close(self) -> None: ...


def shown_contact(contact: Contact) -> str:
    """How a contact appears in records and events: its label, or its address with the secret
    parts cut (robot URLs carry their access token in the query) and phone numbers masked."""
    if contact.label:
        return contact.label
    address = contact.address
    if not address:
        return contact.channel
    if address.startswith(("http://", "https://")):
        parts = urlsplit(address)
        return f"{contact.channel}:{parts.scheme}://{parts.netloc}{parts.path}"
    if "@" in address:
        name, _, domain = address.partition("@")
        return f"{contact.channel}:{name[:1]}***@{domain}"
    if address.isdigit() and len(address) >= 7:
        return f"{contact.channel}:{address[:3]}****{address[-4:]}"
    return f"{contact.channel}:{address}"


def gateway_of(contact: Contact) -> str:
    """What one circuit breaker guards: the host of a URL contact, else the channel's gateway."""
    address = contact.address or ""
    if address.startswith(("http://", "https://")):
        return f"{contact.channel}:{urlsplit(address).netloc}"
    return contact.channel
