"""Delivery channels behind one small interface; each contact names its channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from shared.directory import Contact


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


class Channel(Protocol):
    name: str

    async def send(self, alert: dict[str, Any], contact: Contact) -> DeliveryResult: ...

    async def close(self) -> None: ...
