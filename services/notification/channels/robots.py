"""Group robots of WeCom (企业微信) and DingTalk (钉钉): text messages that @ everyone.

WeCom: POST `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…` with
`{"msgtype": "text", "text": {"content": …, "mentioned_list": ["@all"]}}`.
DingTalk: POST `https://oapi.dingtalk.com/robot/send?access_token=…` with
`{"msgtype": "text", "text": {"content": …}, "at": {"isAtAll": true}}`; a robot with the
"加签" security setting also needs `&timestamp=<ms>&sign=<s>`, where `s` is the url-encoded
base64 of HMAC-SHA256 keyed by the robot's secret over `"<timestamp>\n<secret>"`. The contact
address is the robot URL; its secret is its entry in `NOTIFICATION_CONTACT_SECRETS`.

Both answer HTTP 200 with `errcode`: 0 is delivered, their "too many messages" codes are
retried, anything else (bad key, failed signature, missing keyword) is permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import aiohttp

from services.notification.channels import DeliveryResult
from services.notification.channels.http import GatewayVerdict, send_request
from services.notification.channels.webhook import SecretOf
from services.notification.templates import Form
from shared.domain.directory import Contact

WECOM_TEXT_LIMIT_BYTES = 2048
DINGTALK_TEXT_LIMIT_BYTES = 20000
WECOM_RATE_LIMITED = frozenset({45009})  # api freq out of limit
DINGTALK_RATE_LIMITED = frozenset({130101})  # send too fast


def clip_utf8(text: str, limit: int) -> str:
    """At most `limit` bytes of UTF-8, cut on a character boundary."""
    return text.encode()[:limit].decode(errors="ignore")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` query parameter of DingTalk's signed robots, already url-encoded."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


class _Robot:
    name: str
    form = Form.GROUP  # a group chat, read by all in it
    rate_limited_codes: frozenset[int]

    def __init__(self, client: aiohttp.ClientSession, secret_of: SecretOf) -> None:
        self._client = client
        self._secret_of = secret_of

    def body(self, message: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def url(self, address: str) -> str:
        return address

    def judge(self, body: Any) -> GatewayVerdict:
        code = body.get("errcode") if isinstance(body, dict) else None
        if not isinstance(code, int):
            return GatewayVerdict("no errcode", ok=False, retryable=True)
        return GatewayVerdict(str(code), ok=code == 0, retryable=code in self.rate_limited_codes)

    async def send(self, message: dict[str, Any], contact: Contact) -> DeliveryResult:
        if not contact.address:
            return DeliveryResult(False, error=f"{self.name} contact has no robot URL")
        return await send_request(
            self._client,
            "POST",
            self.url(contact.address),
            self.judge,
            json=self.body(message),
        )

    async def close(self) -> None:
        await self._client.close()


class WeComChannel(_Robot):
    name = "wecom"
    rate_limited_codes = WECOM_RATE_LIMITED

    def body(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "msgtype": "text",
            "text": {
                "content": clip_utf8(message["text"], WECOM_TEXT_LIMIT_BYTES),
                "mentioned_list": ["@all"],
            },
        }


class DingTalkChannel(_Robot):
    name = "dingtalk"
    rate_limited_codes = DINGTALK_RATE_LIMITED

    def __init__(
        self,
        client: aiohttp.ClientSession,
        secret_of: SecretOf,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, secret_of)
        self._clock = clock

    def body(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "msgtype": "text",
            "text": {"content": clip_utf8(message["text"], DINGTALK_TEXT_LIMIT_BYTES)},
            "at": {"isAtAll": True},
        }

    def url(self, address: str) -> str:
        secret = self._secret_of(address)
        if secret is None:
            return address
        timestamp = int(self._clock() * 1000)
        separator = "&" if "?" in address else "?"
        sign = dingtalk_sign(secret.decode(), timestamp)
        return f"{address}{separator}timestamp={timestamp}&sign={sign}"
