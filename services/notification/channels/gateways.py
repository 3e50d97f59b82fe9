"""Phone gateways: SMS and voice calls through a generic JSON gateway, and Aliyun SendSms.

Generic gateway (`sms`, `voice`): POST `{"to": <phone>, "text": <short text>, "idempotency_key":
…, "notification_id": …}` (voice adds `"repeat"`) with `Authorization: Bearer <token>` when one is
set; any 2xx means the gateway took the message.

Aliyun (`aliyun_sms`): the SendSms RPC call (API version 2017-05-25), form-encoded, signed with
the RPC signature v1: HMAC-SHA1 keyed by `AccessKeySecret + "&"` over
`POST&%2F&<percent-encoded canonical query>`, base64. SMS in mainland China go out only through
approved templates, so the approved template must have one variable, `${content}`, which
receives the rendered SMS text. The gateway answers 200 with `Code`: `OK` is delivered, flow
control (`isv.BUSINESS_LIMIT_CONTROL`) and system errors are retried, the rest is permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from services.notification.channels import DeliveryResult
from services.notification.channels.http import GatewayVerdict, send_request
from services.notification.templates import Form
from shared.directory import Contact


class JsonGatewayChannel:
    """A phone gateway with a plain JSON API, for SMS (`form` sms) or calls (`form` voice)."""

    def __init__(
        self,
        name: str,
        form: Form,
        client: httpx.AsyncClient,
        url: str | None,
        token: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.form = form
        self._client = client
        self._url = url
        self._token = token
        self._extra = dict(extra or {})

    async def send(self, message: dict[str, Any], contact: Contact) -> DeliveryResult:
        if not self._url:
            return DeliveryResult(False, error=f"no gateway URL configured for {self.name}")
        if not contact.address:
            return DeliveryResult(False, error=f"{self.name} contact has no phone number")
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        body = {
            "to": contact.address,
            "text": message["text"],
            "idempotency_key": str(message.get("idempotency_key") or message["notification_id"]),
            "notification_id": message["notification_id"],
            **self._extra,
        }
        return await send_request(self._client, "POST", self._url, json=body, headers=headers)

    async def close(self) -> None:
        await self._client.aclose()


def pop_encode(value: str) -> str:
    """Percent-encoding of the Alibaba Cloud RPC signature: only A-Z a-z 0-9 - _ . ~ stay."""
    return quote(value, safe="~")


def aliyun_rpc_signature(method: str, params: Mapping[str, str], access_key_secret: str) -> str:
    canonical = "&".join(
        f"{pop_encode(key)}={pop_encode(value)}" for key, value in sorted(params.items())
    )
    string_to_sign = f"{method}&{pop_encode('/')}&{pop_encode(canonical)}"
    digest = hmac.new(
        f"{access_key_secret}&".encode(), string_to_sign.encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


ALIYUN_RETRYABLE = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "isp.SYSTEM_ERROR", "Throttling"})


def aliyun_verdict(body: Any) -> GatewayVerdict:
    code = str(body.get("Code", "no Code")) if isinstance(body, dict) else "no Code"
    return GatewayVerdict(code, ok=code == "OK", retryable=code in ALIYUN_RETRYABLE)


class AliyunSmsChannel:
    name = "aliyun_sms"
    form = Form.SMS

    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoint: str,
        access_key_id: str | None,
        access_key_secret: str | None,
        sign_name: str | None,
        template_code: str | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._endpoint = endpoint
        self._access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        self._sign_name = sign_name
        self._template_code = template_code
        self._clock = clock

    def signed_params(self, message: dict[str, Any], phone: str) -> dict[str, str]:
        assert self._access_key_id and self._access_key_secret
        params = {
            "AccessKeyId": self._access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": str(message.get("idempotency_key") or message["notification_id"]),
            "PhoneNumbers": phone,
            "RegionId": "cn-hangzhou",
            "SignName": self._sign_name or "",
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": str(uuid.uuid4()),
            "SignatureVersion": "1.0",
            "TemplateCode": self._template_code or "",
            "TemplateParam": json.dumps(
                {"content": message["text"]}, ensure_ascii=False, separators=(",", ":")
            ),
            "Timestamp": self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        }
        return {
            **params,
            "Signature": aliyun_rpc_signature("POST", params, self._access_key_secret),
        }

    async def send(self, message: dict[str, Any], contact: Contact) -> DeliveryResult:
        if not (self._access_key_id and self._access_key_secret and self._template_code):
            return DeliveryResult(False, error="Aliyun SMS access key or template not configured")
        if not contact.address:
            return DeliveryResult(False, error="aliyun_sms contact has no phone number")
        return await send_request(
            self._client,
            "POST",
            self._endpoint,
            aliyun_verdict,
            data=self.signed_params(message, contact.address),
        )

    async def close(self) -> None:
        await self._client.aclose()
