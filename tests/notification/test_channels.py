"""Each channel against a real loopback server: request formats, signatures, and what each
gateway answer means (delivered, retry, or move on to the next contact)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import aiohttp
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.responses import Response
from yarl import URL

from services.notification.channels import http
from services.notification.channels.email import EmailChannel
from services.notification.channels.file import FileChannel
from services.notification.channels.gateways import (
    AliyunSmsChannel,
    JsonGatewayChannel,
    canonical_query,
)
from services.notification.channels.http import http_client
from services.notification.channels.robots import DingTalkChannel, WeComChannel
from services.notification.channels.webhook import WebhookChannel
from services.notification.templates import Form, render_message, stored_alert
from shared import telemetry
from shared.domain.directory import Contact
from tests.notification.builders import obligation_created
from tests.notification.loopback import Gateway, Inbox, always, hang

SECRET = b"subscriber-secret"


def message(form: Form, party: str = "PPS:150626102") -> dict[str, Any]:
    obligation = obligation_created(party).data
    alert = stored_alert("5d0c1f4e-0000-4000-8000-000000000001", obligation, "图克镇派出所")
    rendered = render_message(
        alert,
        form,
        ack_url="http://notification.test/v1/notifications/x/ack?token=1.0.9.sig",
        record_url="http://intake.test/v1/incidents/x",
    )
    return {**rendered, "idempotency_key": "delivery-1", "contact_index": 0}


@pytest.fixture
async def client() -> aiohttp.ClientSession:
    return http_client(4, 1.0)


async def test_webhook_is_signed_over_timestamp_and_body(gateway: Gateway, client) -> None:
    channel = WebhookChannel(client, lambda _address: SECRET)
    sent = message(Form.FULL)
    result = await channel.send(sent, Contact(channel="webhook", address=gateway.url("/wh-sig")))
    await channel.close()
    assert result.delivered and result.status_code == 200
    [call] = gateway.calls_to("/wh-sig")
    timestamp = call.headers["x-alert-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(SECRET, timestamp.encode() + b"." + call.body, hashlib.sha256).hexdigest()
    assert call.headers["x-alert-signature"] == f"sha256={expected}"
    assert call.headers["idempotency-key"] == "delivery-1"
    assert call.headers["content-type"].startswith("application/json")
    assert call.json()["text"] == sent["text"]
    assert call.json()["ack_url"] == sent["ack_url"]


async def test_a_send_is_a_client_span_of_the_alert_s_trace_without_its_query(
    gateway: Gateway, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway hears the trace (`traceparent`), the span keeps no query string (a robot's
    key travels in it)."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(http, "tracer", provider.get_tracer("test"))
    channel = WebhookChannel(client)
    with provider.get_tracer("test").start_as_current_span("notification send") as alert:
        result = await channel.send(
            message(Form.FULL),
            Contact(channel="webhook", address=gateway.url("/wh-traced?key=robot-key")),
        )
    await channel.close()
    assert result.delivered
    [call] = gateway.calls_to("/wh-traced")
    trace_id = format(alert.get_span_context().trace_id, "032x")
    assert call.headers["traceparent"].split("-")[1] == trace_id
    [send] = [span for span in spans.get_finished_spans() if span.name == "POST"]
    assert send.kind is SpanKind.CLIENT
    assert send.parent is not None and send.parent.span_id == alert.get_span_context().span_id
    assert send.attributes is not None
    assert "robot-key" not in str(dict(send.attributes))
    assert send.attributes["http.response.status_code"] == 200
    assert call.headers["traceparent"].split("-")[2] == format(send.context.span_id, "016x")


async def test_a_send_of_a_dropped_trace_carries_it_without_a_span_of_its_own(
    gateway: Gateway, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a context the sampler dropped, the send makes no client span (it would never be
    recorded) and the gateway still hears the trace, dropped, as the alert's send carried it."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(http, "tracer", provider.get_tracer("test"))
    channel = WebhookChannel(client)
    dropped = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    with telemetry.in_trace_of({"traceparent": dropped}, "notification send"):
        result = await channel.send(
            message(Form.FULL), Contact(channel="webhook", address=gateway.url("/wh-dropped"))
        )
    await channel.close()
    assert result.delivered
    [call] = gateway.calls_to("/wh-dropped")
    assert call.headers["traceparent"] == dropped
    assert spans.get_finished_spans() == ()


async def test_webhook_without_a_secret_goes_unsigned(gateway: Gateway, client) -> None:
    channel = WebhookChannel(client)
    await channel.send(message(Form.FULL), Contact(channel="webhook", address=gateway.url("/wh")))
    await channel.close()
    [call] = gateway.calls_to("/wh")
    assert "x-alert-signature" not in call.headers


@pytest.mark.parametrize(
    ("answer", "delivered", "retryable", "retry_after"),
    [
        (Response(status_code=204), True, False, None),
        (Response(status_code=400), False, False, None),
        (Response(status_code=404), False, False, None),
        (Response(status_code=500), False, True, None),
        (Response(status_code=503, headers={"Retry-After": "7"}), False, True, 7.0),
        (Response(status_code=429, headers={"Retry-After": "2"}), False, True, 2.0),
        (Response(status_code=408), False, True, None),
    ],
)
async def test_http_answers_are_delivered_retryable_or_permanent(
    gateway: Gateway, client, answer, delivered, retryable, retry_after
) -> None:
    path = f"/answer-{answer.status_code}"

    async def respond(_call, _n):
        return answer

    gateway.answers[path] = respond
    channel = WebhookChannel(client)
    result = await channel.send(
        message(Form.FULL), Contact(channel="webhook", address=gateway.url(path))
    )
    await channel.close()
    assert (result.delivered, result.retryable, result.retry_after) == (
        delivered,
        retryable,
        retry_after,
    )
    assert result.status_code == answer.status_code


async def test_a_hanging_gateway_is_a_retryable_timeout(gateway: Gateway) -> None:
    gateway.answers["/slow"] = hang(5, gateway.closing)
    channel = WebhookChannel(http_client(4, 0.3))
    started = time.monotonic()
    result = await channel.send(
        message(Form.FULL), Contact(channel="webhook", address=gateway.url("/slow"))
    )
    await channel.close()
    assert time.monotonic() - started < 2
    assert not result.delivered and result.retryable
    assert result.error.startswith("timeout")


async def test_a_closed_port_is_retryable(client) -> None:
    from tools.localinfra import free_port

    channel = WebhookChannel(client)
    address = f"http://127.0.0.1:{free_port()}/nobody"
    result = await channel.send(message(Form.FULL), Contact(channel="webhook", address=address))
    await channel.close()
    assert not result.delivered and result.retryable


def documented_dingtalk_sign(secret: str, timestamp: str) -> bytes:
    """DingTalk's documented algorithm, written out again: HMAC-SHA256 keyed by the secret
    over "timestamp\\nsecret", base64."""
    string_to_sign = f"{timestamp}\n{secret}"
    return base64.b64encode(
        hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    )


async def test_dingtalk_text_message_with_signed_timestamp(gateway: Gateway, client) -> None:
    gateway.answers["/dt/robot/send"] = always(200, {"errcode": 0, "errmsg": "ok"})
    address = gateway.url("/dt/robot/send?access_token=abc")
    channel = DingTalkChannel(client, lambda _address: b"SECxyz")
    sent = message(Form.FULL)
    result = await channel.send(sent, Contact(channel="dingtalk", address=address))
    await channel.close()
    assert result.delivered and result.gateway_code == "0"
    [call] = gateway.calls_to("/dt/robot/send")
    assert call.query["access_token"] == "abc"
    timestamp = call.query["timestamp"]
    assert abs(int(timestamp) - time.time() * 1000) < 3_600_000  # DingTalk refuses > 1 h off
    raw_sign = dict(part.split("=", 1) for part in call.raw_query.split("&"))["sign"]
    assert unquote_plus(raw_sign).encode() == documented_dingtalk_sign("SECxyz", timestamp)
    assert call.json() == {
        "msgtype": "text",
        "text": {"content": sent["text"]},
        "at": {"isAtAll": True},
    }


@pytest.mark.parametrize(
    ("errcode", "retryable"), [(130101, True), (310000, False), (300001, False)]
)
async def test_dingtalk_error_codes(gateway: Gateway, client, errcode, retryable) -> None:
    path = f"/dt-{errcode}"
    gateway.answers[path] = always(200, {"errcode": errcode, "errmsg": "refused"})
    channel = DingTalkChannel(client, lambda _address: None)
    result = await channel.send(
        message(Form.FULL), Contact(channel="dingtalk", address=gateway.url(path))
    )
    await channel.close()
    assert not result.delivered
    assert (result.retryable, result.gateway_code) == (retryable, str(errcode))
    assert "timestamp" not in gateway.calls_to(path)[0].query  # unsigned robot


async def test_wecom_text_message(gateway: Gateway, client) -> None:
    gateway.answers["/wc/cgi-bin/webhook/send"] = always(200, {"errcode": 0, "errmsg": "ok"})
    channel = WeComChannel(client, lambda _address: None)
    sent = message(Form.FULL)
    address = gateway.url("/wc/cgi-bin/webhook/send?key=693a91f6")
    result = await channel.send(sent, Contact(channel="wecom", address=address))
    await channel.close()
    assert result.delivered
    [call] = gateway.calls_to("/wc/cgi-bin/webhook/send")
    assert call.query == {"key": "693a91f6"}
    body = call.json()
    assert body == {
        "msgtype": "text",
        "text": {"content": sent["text"], "mentioned_list": ["@all"]},
    }
    assert len(body["text"]["content"].encode()) <= 2048


async def test_wecom_clips_long_text_to_2048_bytes_and_retries_its_rate_limit(
    gateway: Gateway, client
) -> None:
    gateway.answers["/wecom-busy"] = always(200, {"errcode": 45009, "errmsg": "freq out of limit"})
    channel = WeComChannel(client, lambda _address: None)
    long = {**message(Form.FULL), "text": "图" * 1000}
    result = await channel.send(long, Contact(channel="wecom", address=gateway.url("/wecom-busy")))
    await channel.close()
    assert not result.delivered and result.retryable and result.gateway_code == "45009"
    content = gateway.calls_to("/wecom-busy")[0].json()["text"]["content"]
    assert len(content.encode()) <= 2048 and content == "图" * 682


async def test_generic_sms_and_voice_gateways(gateway: Gateway) -> None:
    sms = JsonGatewayChannel("sms", Form.SMS, http_client(4, 5.0), gateway.url("/g-sms"), "tok")
    voice = JsonGatewayChannel(
        "voice", Form.VOICE, http_client(4, 5.0), gateway.url("/g-voice"), extra={"repeat": 2}
    )
    short, spoken = message(Form.SMS), message(Form.VOICE)
    assert (await sms.send(short, Contact(channel="sms", address="13900000009"))).delivered
    assert (await voice.send(spoken, Contact(channel="voice", address="13900000009"))).delivered
    await sms.close()
    await voice.close()
    [sms_call] = gateway.calls_to("/g-sms")
    assert sms_call.headers["authorization"] == "Bearer tok"
    assert sms_call.json() == {
        "to": "13900000009",
        "text": short["text"],
        "idempotency_key": "delivery-1",
        "notification_id": short["notification_id"],
    }
    [voice_call] = gateway.calls_to("/g-voice")
    assert "authorization" not in voice_call.headers
    assert voice_call.json()["text"] == spoken["text"] and voice_call.json()["repeat"] == 2
    assert "http" not in spoken["text"]  # nothing to click in a call


def aliyun(gateway: Gateway, path: str) -> AliyunSmsChannel:
    return AliyunSmsChannel(
        http_client(4, 5.0),
        gateway.url(path),
        "testId",
        "testSecret",
        "乌审旗司法局",
        "SMS_000001",
        clock=lambda: datetime(2026, 3, 1, 2, 3, 4, tzinfo=UTC),
    )


async def test_aliyun_send_sms_request_is_signed_as_documented(gateway: Gateway) -> None:
    gateway.answers["/ali/"] = always(
        200, {"Code": "OK", "Message": "OK", "RequestId": "r-1", "BizId": "b-1"}
    )
    channel = aliyun(gateway, "/ali/")
    sent = message(Form.SMS)
    result = await channel.send(sent, Contact(channel="aliyun_sms", address="13900000002"))
    await channel.close()
    assert result.delivered and result.gateway_code == "OK"
    [call] = gateway.calls_to("/ali/")
    assert call.body == b""
    # The query arrives exactly as it was signed, and the signature holds for what arrived.
    assert call.raw_query == canonical_query(call.query)
    assert call.headers["authorization"] == call.acs3_authorization("testId", "testSecret")
    assert call.headers["authorization"].startswith(
        "ACS3-HMAC-SHA256 Credential=testId,SignedHeaders=host;x-acs-action;"
        "x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature="
    )
    assert call.headers["x-acs-action"] == "SendSms"
    assert call.headers["x-acs-version"] == "2017-05-25"
    assert call.headers["host"] == f"127.0.0.1:{gateway.port}"
    assert call.headers["x-acs-date"] == "2026-03-01T02:03:04Z"
    params = call.query
    assert params["PhoneNumbers"] == "13900000002"
    assert params["SignName"] == "乌审旗司法局" and params["TemplateCode"] == "SMS_000001"
    assert params["OutId"] == "delivery-1"
    assert json.loads(params["TemplateParam"]) == {"content": sent["text"]}
    assert not {"Signature", "SignatureMethod", "SignatureVersion", "AccessKeyId"} & set(params)


async def test_aliyun_signature_is_refused_when_anything_signed_changes(gateway: Gateway) -> None:
    """A tampered call would fail the gateway's check: the signature covers query and headers."""
    channel = aliyun(gateway, "/ali-tamper/")
    await channel.send(message(Form.SMS), Contact(channel="aliyun_sms", address="13900000002"))
    await channel.close()
    [call] = gateway.calls_to("/ali-tamper/")
    tampered = replace(call, query={**call.query, "PhoneNumbers": "13900000009"})
    assert tampered.acs3_authorization("testId", "testSecret") != call.headers["authorization"]
    assert call.acs3_authorization("testId", "otherSecret") != call.headers["authorization"]
    nonces = {call.headers["x-acs-signature-nonce"]}
    channel = aliyun(gateway, "/ali-tamper/")
    await channel.send(message(Form.SMS), Contact(channel="aliyun_sms", address="13900000002"))
    await channel.close()
    nonces.add(gateway.calls_to("/ali-tamper/")[1].headers["x-acs-signature-nonce"])
    assert len(nonces) == 2  # a fresh nonce per call, so a replay is refused


@pytest.mark.parametrize(
    ("code", "retryable"),
    [("isv.BUSINESS_LIMIT_CONTROL", True), ("isv.MOBILE_NUMBER_ILLEGAL", False)],
)
async def test_aliyun_error_codes(gateway: Gateway, code, retryable) -> None:
    path = f"/ali-{code}/"
    gateway.answers[path] = always(200, {"Code": code, "Message": "refused"})
    channel = aliyun(gateway, path)
    result = await channel.send(message(Form.SMS), Contact(channel="aliyun_sms", address="1"))
    await channel.close()
    assert not result.delivered and (result.retryable, result.gateway_code) == (retryable, code)


async def test_email_reaches_the_smtp_server(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    channel = EmailChannel("127.0.0.1", port, "alerts@sqjz.example", timeout=2)
    sent = message(Form.FULL)
    result = await channel.send(sent, Contact(channel="email", address="duty@pps.example"))
    assert result.delivered and result.status_code == 250
    [mail] = inbox.to("duty@pps.example")
    assert mail.sender == "alerts@sqjz.example"
    assert mail.message["Subject"] == sent["title"]
    assert mail.message["X-Idempotency-Key"] == "delivery-1"
    assert mail.message.get_content().strip() == sent["text"]


async def test_email_refused_mailbox_is_permanent(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    inbox.refused.add("gone@pps.example")
    channel = EmailChannel("127.0.0.1", port, "alerts@sqjz.example", timeout=2)
    result = await channel.send(
        message(Form.FULL), Contact(channel="email", address="gone@pps.example")
    )
    assert not result.delivered and not result.retryable and result.status_code == 550


async def test_email_server_down_is_retryable() -> None:
    from tools.localinfra import free_port

    channel = EmailChannel("127.0.0.1", free_port(), "alerts@sqjz.example", timeout=1)
    result = await channel.send(message(Form.FULL), Contact(channel="email", address="a@b.example"))
    assert not result.delivered and result.retryable


async def test_gateway_answering_a_non_json_200_to_robots_is_retried(
    gateway: Gateway, client
) -> None:
    async def html(_call, _n):
        return Response("<html>proxy</html>", media_type="text/html")

    gateway.answers["/proxy"] = html
    channel = WeComChannel(client, lambda _address: None)
    result = await channel.send(
        message(Form.FULL), Contact(channel="wecom", address=gateway.url("/proxy"))
    )
    await channel.close()
    assert not result.delivered and result.retryable


@pytest.fixture
def proxied_through(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Proxy settings in the environment, as `environment_proxy` reads them once per gateway."""

    def set_proxy(proxy: str, no_proxy: str) -> None:
        for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("NO_PROXY", no_proxy)
        http.environment_proxy.cache_clear()

    yield set_proxy
    http.environment_proxy.cache_clear()


async def test_a_gateway_is_reached_through_the_proxy_the_environment_names(
    gateway: Gateway, client: aiohttp.ClientSession, proxied_through: Callable[[str, str], None]
) -> None:
    # The loopback gateway stands in for the proxy too: it answers the absolute URL it is
    # asked for by its path. The gateway's own name resolves nowhere.
    proxied_through(gateway.url(""), "bypassed.invalid")
    channel = WebhookChannel(client, lambda _address: SECRET)
    through = await channel.send(
        message(Form.FULL), Contact(channel="webhook", address="http://gateway.invalid/wh-proxy")
    )
    direct = await channel.send(
        message(Form.FULL), Contact(channel="webhook", address="http://bypassed.invalid/wh-proxy")
    )
    await channel.close()
    assert through.delivered, through
    assert len(gateway.calls_to("/wh-proxy")) == 1
    # NO_PROXY: sent directly, to a name that resolves nowhere.
    assert not direct.delivered and direct.retryable
    assert http.environment_proxy("http", "gateway.invalid")[0] == URL(gateway.url(""))
    assert http.environment_proxy("http", "bypassed.invalid") == (None, None)


async def test_the_file_channel_appends_each_alert_as_a_line_and_says_when_it_cannot(
    tmp_path: Path,
) -> None:
    channel = FileChannel(tmp_path / "local" / "alerts.jsonl")
    first, second = {"text": "【演练】第一"}, {"text": "第二", "n": 2}
    assert (await channel.send(first, Contact(channel="file", address=""))).delivered
    elsewhere = tmp_path / "drills.jsonl"
    assert (await channel.send(second, Contact(channel="file", address=str(elsewhere)))).delivered
    assert (await channel.send(second, Contact(channel="file", address=""))).delivered
    lines = (tmp_path / "local" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [first, second]
    assert json.loads(elsewhere.read_text(encoding="utf-8")) == second

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("", encoding="utf-8")
    failed = await channel.send(first, Contact(channel="file", address=str(blocked / "a.jsonl")))
    assert not failed.delivered and failed.error is not None
    assert failed.error.startswith(("FileExistsError", "NotADirectoryError"))
