"""What an HTTP gateway's answer means for delivery, the same for every HTTP channel.

2xx is delivered (unless the body says otherwise: robots and cloud SMS answer 200 with an error
code); 408, 425, 429 and 5xx are worth retrying, honouring `Retry-After`; any other 4xx is
permanent and the dispatcher moves on to the party's next contact. Timeouts and connection
failures are retryable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from services.notification.channels import DeliveryResult

RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class GatewayVerdict:
    """What a gateway's own answer code says, for gateways that answer 200 to failures."""

    code: str
    ok: bool
    retryable: bool = False


BodyJudge = Callable[[Any], GatewayVerdict]


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: either delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - (now or datetime.now(UTC))).total_seconds(), 0.0)


def judge_status(response: httpx.Response) -> DeliveryResult:
    code = response.status_code
    if response.is_success:
        return DeliveryResult(True, code)
    retryable = code in RETRYABLE_STATUS or code >= 500
    return DeliveryResult(
        False,
        code,
        f"HTTP {code}",
        retryable=retryable,
        retry_after=retry_after_seconds(response.headers.get("retry-after")) if retryable else None,
    )


def judge_response(response: httpx.Response, body_judge: BodyJudge | None = None) -> DeliveryResult:
    result = judge_status(response)
    if not result.delivered or body_judge is None:
        return result
    try:
        body = response.json()
    except ValueError:
        return DeliveryResult(False, response.status_code, "gateway answered no JSON", True)
    verdict = body_judge(body)
    if verdict.ok:
        return replace(result, gateway_code=verdict.code)
    return DeliveryResult(
        False,
        response.status_code,
        f"gateway refused: {verdict.code}",
        retryable=verdict.retryable,
        gateway_code=verdict.code,
    )


async def send_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body_judge: BodyJudge | None = None,
    **request: Any,
) -> DeliveryResult:
    try:
        response = await client.request(method, url, **request)
    except httpx.TimeoutException as error:
        return DeliveryResult(False, error=f"timeout: {error.__class__.__name__}", retryable=True)
    except httpx.HTTPError as error:
        return DeliveryResult(False, error=f"{error.__class__.__name__}: {error}", retryable=True)
    return judge_response(response, body_judge)
