"""Phone gateways: SMS and voice calls through a generic JSON gateway, and Aliyun SendSms.

Generic gateway (`sms`, `voice`): POST `{"to": <phone>, "text": <short text>, "idempotency_key":
…, "notification_id": …}` (voice adds `"repeat"`) with `Authorization: Bearer <token>` when one is
set; any 2xx means the gateway took the message.

Aliyun (`aliyun_sms`): the SendSms call (API version 2017-05-25) signed with the V3 request
signature `ACS3-HMAC-SHA256` (the RPC signature v1, HMAC-SHA1, is discontinued). The parameters
travel in the query string of an empty-bodied POST; `acs3_sign` hashes a canonical request
(method, path, query, the `host` and `x-acs-*` headers, the body's SHA-256) and keys an
HMAC-SHA256 of it with the AccessKey secret; the `Authorization` header carries the key id, the
signed header names and the hex signature. SMS in mainland China go out only through approved
templates, so the approved template must have one variable, `${content}`, which receives the
rendered SMS text. The gateway answers 200 with `Code`: `OK` is delivered, flow control
(`isv.BUSINESS_LIMIT_CONTROL`) and system errors are retried, the rest is permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from services.notification.channels import DeliveryResult
from services.notification.channels.http import GatewayVerdict, send_request
from services.notification.templates import Form
from shared.domain.directory import Contact


class JsonGatewayChannel:
    """A phone gateway with a plain JSON API, for SMS (`form` sms) or calls (`form` voice)."""

    def __init__(
        self,
        name: str,
        form: Form,
        client: aiohttp.ClientSession,
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
        await self._client.close()


def pop_encode(value: str) -> str:
    """RFC 3986 percent-encoding as Alibaba Cloud signs it: only A-Z a-z 0-9 - _ . ~ stay."""
    return quote(value, safe="~")


ACS3_ALGORITHM = "ACS3-HMAC-SHA256"


@dataclass(frozen=True)
class Acs3Signature:
    """Each step of a V3 request signature, so each can be checked against the vendor's example."""

    canonical_request: str
    string_to_sign: str
    signature: str
    authorization: str


def acs3_headers(
    host: str, action: str, version: str, date: datetime, nonce: str, payload: bytes = b""
) -> dict[str, str]:
    """The headers a V3-signed call must carry and sign (all but `Authorization`)."""
    return {
        "host": host,
        "x-acs-action": action,
        "x-acs-content-sha256": hashlib.sha256(payload).hexdigest(),
        "x-acs-date": date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce,
        "x-acs-version": version,
    }


def canonical_query(query: Mapping[str, str]) -> str:
    return "&".join(
        f"{pop_encode(name)}={pop_encode(value)}" for name, value in sorted(query.items())
    )


def acs3_sign(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload: bytes,
    access_key_id: str,
    access_key_secret: str,
) -> Acs3Signature:
    """The V3 signature of a request; pure, so the vendor's published example pins it."""
    signed = {
        name.lower(): value.strip()
        for name, value in headers.items()
        if name.lower() in ("host", "content-type") or name.lower().startswith("x-acs-")
    }
    names = sorted(signed)
    signed_headers = ";".join(names)
    canonical_request = "\n".join(
        [
            method.upper(),
            "/".join(pop_encode(segment) for segment in (path or "/").split("/")),
            canonical_query(query),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            signed_headers,
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    string_to_sign = f"{ACS3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    signature = hmac.new(
        access_key_secret.encode(), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    authorization = (
        f"{ACS3_ALGORITHM} Credential={access_key_id},"
        f"SignedHeaders={signed_headers},Signature={signature}"
    )
    return Acs3Signature(canonical_request, string_to_sign, signature, authorization)


ALIYUN_RETRYABLE = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "isp.SYSTEM_ERROR", "Throttling"})


def aliyun_verdict(body: Any) -> GatewayVerdict:
    code = str(body.get("Code", "no Code")) if isinstance(body, dict) else "no Code"
    return GatewayVerdict(code, ok=code == "OK", retryable=code in ALIYUN_RETRYABLE)


class AliyunSmsChannel:
    name = "aliyun_sms"
    form = Form.SMS

    def __init__(
        self,
        client: aiohttp.ClientSession,
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

    def send_sms_query(self, message: dict[str, Any], phone: str) -> dict[str, str]:
        return {
            "OutId": str(message.get("idempotency_key") or message["notification_id"]),
            "PhoneNumbers": phone,
            "SignName": self._sign_name or "",
            "TemplateCode": self._template_code or "",
            "TemplateParam": json.dumps(
                {"content": message["text"]}, ensure_ascii=False, separators=(",", ":")
            ),
        }

    def signed_request(self, message: dict[str, Any], phone: str) -> tuple[str, dict[str, str]]:
        """The URL (endpoint and canonical query) and the headers of one signed SendSms call."""
        assert self._access_key_id and self._access_key_secret
        endpoint = urlsplit(self._endpoint)
        query = self.send_sms_query(message, phone)
        headers = acs3_headers(
            endpoint.netloc, "SendSms", "2017-05-25", self._clock(), uuid.uuid4().hex
        )
        signature = acs3_sign(
            "POST",
            endpoint.path,
            query,
            headers,
            b"",
            self._access_key_id,
            self._access_key_secret,
        )
        # The query is sent exactly as signed, already encoded, so the gateway hashes the same.
        url = urlunsplit(endpoint._replace(query=canonical_query(query)))
        return url, {**headers, "Authorization": signature.authorization}

    async def send(self, message: dict[str, Any], contact: Contact) -> DeliveryResult:
        if not (self._access_key_id and self._access_key_secret and self._template_code):
            return DeliveryResult(False, error="Aliyun SMS access key or template not configured")
        if not contact.address:
            return DeliveryResult(False, error="aliyun_sms contact has no phone number")
        url, headers = self.signed_request(message, contact.address)
        # Encoded already, as signed: sent byte for byte.
        return await send_request(
            self._client, "POST", URL(url, encoded=True), aliyun_verdict, headers=headers
        )

    async def close(self) -> None:
        await self._client.close()
