"""Pure parts of delivery: retry decisions, HTTP answers, limits, breakers, shown contacts, and
the gateway signatures against their documented examples."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote_plus

import httpx
import pytest

from services.notification.channels import DeliveryResult, gateway_of, shown_contact
from services.notification.channels.gateways import pop_encode
from services.notification.channels.http import judge_status, retry_after_seconds
from services.notification.channels.robots import clip_utf8, dingtalk_sign
from services.notification.channels.webhook import webhook_signature
from services.notification.dispatch import DeliveryPolicy
from services.notification.guard import (
    ChannelGuard,
    CircuitBreaker,
    SendSlot,
    TokenBucket,
    limits_for,
)
from shared.domain.directory import Contact
from shared.settings import ChannelLimits, Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


POLICY = DeliveryPolicy(
    ack=timedelta(minutes=10),
    max_attempts=4,
    retry_base=1.0,
    retry_cap=60.0,
    lease=timedelta(seconds=60),
    send_timeout=10.0,
    record_base_url="https://sqjz.example/incidents",
)


@pytest.mark.parametrize(
    ("result", "attempts_made", "retries"),
    [
        (DeliveryResult(True, 200), 1, False),
        (DeliveryResult(False, 400), 1, False),  # permanent: next contact at once
        (DeliveryResult(False, 503, retryable=True), 1, True),
        (DeliveryResult(False, 503, retryable=True), 3, True),
        (DeliveryResult(False, 503, retryable=True), 4, False),  # last allowed attempt
    ],
)
def test_retry_only_retryable_failures_within_the_attempt_budget(result, attempts_made, retries):
    assert (POLICY.retry_in(attempts_made, result) is not None) is retries


def test_retry_backs_off_exponentially_with_jitter():
    failure = DeliveryResult(False, 500, retryable=True)
    for attempts_made, base in ((1, 1.0), (2, 2.0), (3, 4.0)):
        for _ in range(20):
            delay = POLICY.retry_in(attempts_made, failure)
            assert timedelta(seconds=0.5 * base) <= delay < timedelta(seconds=1.5 * base)


def test_retry_after_of_the_gateway_is_honoured_up_to_the_cap():
    assert POLICY.retry_in(
        1, DeliveryResult(False, 429, retryable=True, retry_after=30)
    ) >= timedelta(seconds=30)
    assert POLICY.retry_in(
        1, DeliveryResult(False, 429, retryable=True, retry_after=3600)
    ) <= timedelta(seconds=90)


@pytest.mark.parametrize(
    ("status", "delivered", "retryable"),
    [
        (200, True, False),
        (202, True, False),
        (400, False, False),
        (401, False, False),
        (404, False, False),
        (408, False, True),
        (429, False, True),
        (500, False, True),
        (502, False, True),
        (503, False, True),
    ],
)
def test_http_status_judgement(status, delivered, retryable):
    result = judge_status(httpx.Response(status))
    assert (result.delivered, result.retryable, result.status_code) == (
        delivered,
        retryable,
        status,
    )


def test_retry_after_in_seconds_or_as_an_http_date():
    now = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Sat, 01 Mar 2025 02:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Sat, 01 Mar 2025 01:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    result = judge_status(httpx.Response(429, headers={"Retry-After": "5"}))
    assert result.retry_after == 5.0


def test_token_bucket_refills_at_its_rate_up_to_its_burst():
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert bucket.available() == 3
    bucket.take(3)
    assert bucket.available() == 0
    clock.now += 1.0
    assert bucket.available() == 2
    clock.now += 100
    assert bucket.available() == 3


def test_a_bucket_says_when_its_next_token_comes():
    clock = Clock()
    bucket = TokenBucket(rate=4.0, burst=2, clock=clock)
    assert bucket.seconds_until_token() == 0
    bucket.take(2)
    assert bucket.seconds_until_token() == pytest.approx(0.25)
    clock.now += 0.1
    assert bucket.seconds_until_token() == pytest.approx(0.15)


def test_a_full_channel_says_whether_time_alone_frees_it():
    clock = Clock()
    guard = ChannelGuard(ChannelLimits(concurrency=2, rate_per_second=2, burst=1), 3, 10, clock)
    guard.started(1)
    assert guard.capacity() == 0
    assert guard.seconds_until_room() == pytest.approx(0.5)  # out of tokens: back in 0.5 s
    clock.now += 1
    guard.started(1)
    assert guard.seconds_until_room() is None  # out of slots: only a send that ends frees one


def test_channel_capacity_is_bounded_by_slots_and_tokens():
    clock = Clock()
    guard = ChannelGuard(ChannelLimits(concurrency=2, rate_per_second=1, burst=5), 3, 10, clock)
    assert guard.capacity() == 2
    guard.started(2)
    assert guard.capacity() == 0
    guard.finished()
    assert guard.capacity() == 1
    guard.finished()
    guard.started(2)
    guard.finished()
    guard.finished()
    assert guard.capacity() == 1  # slots are free but only one token is left


def test_a_send_gives_its_slot_back_once_and_says_when_its_channel_was_full():
    guard = ChannelGuard(ChannelLimits(concurrency=2, rate_per_second=10, burst=10), 3, 10, Clock())
    guard.started(2)
    first, second = SendSlot(guard), SendSlot(guard)
    assert first.give_back() is True  # the channel was full: a claim may be made now
    assert first.give_back() is False  # once: the answer's record gives back nothing more
    assert guard.in_flight == 1
    assert second.give_back() is False  # a slot was free already
    assert guard.in_flight == 0
    assert SendSlot(None).give_back() is False  # a channel not configured has no slots


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_cooldown():
    clock = Clock()
    breaker = CircuitBreaker(failures_to_open=3, cooldown=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record(healthy=False)
    breaker.record(healthy=True)  # a success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.record(healthy=False)
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.retry_in() == 10
    clock.now += 10
    assert breaker.state == "half-open"
    assert breaker.allow()  # one trial
    assert not breaker.allow()  # and only one
    breaker.record(healthy=False)
    assert breaker.state == "open"
    clock.now += 10
    assert breaker.allow()
    breaker.record(healthy=True)
    assert breaker.state == "closed" and breaker.allow()


def test_breakers_are_per_gateway():
    guard = ChannelGuard(ChannelLimits(), 1, 10, Clock())
    down = guard.breaker(gateway_of(Contact(channel="webhook", address="http://a.example/x")))
    down.record(healthy=False)
    assert not down.allow()
    up = guard.breaker(gateway_of(Contact(channel="webhook", address="http://b.example/x?k=1")))
    assert up.allow()
    assert gateway_of(Contact(channel="sms", address="13900000000")) == "sms"


def test_robot_channels_default_to_their_documented_rate_and_settings_override():
    assert limits_for("dingtalk", Settings()).rate_per_second == pytest.approx(20 / 60)
    assert limits_for("webhook", Settings()).rate_per_second == 300
    assert limits_for("sms", Settings()) == ChannelLimits()
    custom = Settings(notification_channel_limits={"sms": {"concurrency": 1}})
    assert limits_for("sms", custom).concurrency == 1


@pytest.mark.parametrize(
    ("contact", "shown"),
    [
        (Contact(channel="file", label="演练"), "演练"),
        (Contact(channel="file"), "file"),
        (
            Contact(
                channel="dingtalk", address="https://oapi.dingtalk.com/robot/send?access_token=s"
            ),
            "dingtalk:https://oapi.dingtalk.com/robot/send",
        ),
        (Contact(channel="sms", address="13912345678"), "sms:139****5678"),
        (Contact(channel="email", address="duty@pps.example"), "email:d***@pps.example"),
    ],
)
def test_shown_contact_cuts_secrets_and_masks_numbers(contact, shown):
    assert shown_contact(contact) == shown


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("a b", "a%20b"),
        ("*", "%2A"),
        ("~-_.", "~-_."),
        ("/=&+", "%2F%3D%26%2B"),
        ("派", "%E6%B4%BE"),
    ],
)
def test_alibaba_cloud_percent_encoding(raw, encoded):
    assert pop_encode(raw) == encoded


def test_dingtalk_sign_is_the_documented_hmac_of_timestamp_and_secret():
    secret, timestamp = "SEC0123456789abcdef", 1700000000000
    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    )
    sign = dingtalk_sign(secret, timestamp)
    assert unquote_plus(sign).encode() == expected
    assert "+" not in sign and "/" not in sign and "=" not in sign  # url-encoded


def test_webhook_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = '{"a":"图"}'.encode()
    expected = hmac.new(b"s", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook_signature(b"s", "1700000000", body) == f"sha256={expected}"


def test_clip_utf8_never_splits_a_character():
    assert clip_utf8("图克镇", 7) == "图克"
    assert clip_utf8("abc", 10) == "abc"
