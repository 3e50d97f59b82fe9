"""JSON POST of the alert to a subscriber's URL (the county public-security platform, ...)."""

from __future__ import annotations

from typing import Any

import httpx

from services.notification.channels import DeliveryResult
from shared.directory import Contact


class WebhookChannel:
    name = "webhook"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, alert: dict[str, Any], contact: Contact) -> DeliveryResult:
        if not contact.address:
            return DeliveryResult(False, error="webhook contact has no URL")
        try:
            response = await self._client.post(
                contact.address,
                json=alert,
                headers={"Idempotency-Key": alert["notification_id"]},
            )
        except httpx.HTTPError as error:
            return DeliveryResult(False, error=f"{error.__class__.__name__}: {error}")
        if response.is_success:
            return DeliveryResult(True, response.status_code)
        return DeliveryResult(False, response.status_code, f"HTTP {response.status_code}")

    async def close(self) -> None:
        await self._client.aclose()
