"""The channels a deployment has, built from its settings; a contact names one by `channel`."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from services.notification.channels import Channel
from services.notification.channels.email import EmailChannel
from services.notification.channels.file import FileChannel
from services.notification.channels.gateways import AliyunSmsChannel, JsonGatewayChannel
from services.notification.channels.robots import DingTalkChannel, WeComChannel
from services.notification.channels.webhook import SecretOf, WebhookChannel
from services.notification.templates import Form
from shared.settings import Settings


def _plain(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def secret_lookup(settings: Settings, fallback: bool) -> SecretOf:
    """Secret of a contact address: its own, else (for webhooks) the default one."""
    per_address = {
        address: secret.get_secret_value().encode()
        for address, secret in settings.notification_contact_secrets.items()
    }
    default = _plain(settings.notification_webhook_secret) if fallback else None

    def secret_of(address: str) -> bytes | None:
        return per_address.get(address) or (default.encode() if default else None)

    return secret_of


def build_channels(settings: Settings) -> dict[str, Channel]:
    # One HTTP client per channel, so a hung gateway exhausts no other channel's connections.
    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=httpx.Timeout(settings.notification_send_timeout_seconds))

    channels: list[Channel] = [
        FileChannel(settings.alerts_file),
        WebhookChannel(client(), secret_lookup(settings, fallback=True)),
        WeComChannel(client(), secret_lookup(settings, fallback=False)),
        DingTalkChannel(client(), secret_lookup(settings, fallback=False)),
        JsonGatewayChannel(
            "sms",
            Form.SMS,
            client(),
            settings.notification_sms_url,
            _plain(settings.notification_sms_token),
        ),
        JsonGatewayChannel(
            "voice",
            Form.VOICE,
            client(),
            settings.notification_voice_url,
            _plain(settings.notification_voice_token),
            extra={"repeat": 2},
        ),
        AliyunSmsChannel(
            client(),
            settings.notification_aliyun_sms_endpoint,
            settings.notification_aliyun_access_key_id,
            _plain(settings.notification_aliyun_access_key_secret),
            settings.notification_aliyun_sms_sign_name,
            settings.notification_aliyun_sms_template_code,
        ),
        EmailChannel(
            settings.notification_smtp_host,
            settings.notification_smtp_port,
            settings.notification_smtp_sender,
            username=settings.notification_smtp_username,
            password=_plain(settings.notification_smtp_password),
            starttls=settings.notification_smtp_starttls,
            tls=settings.notification_smtp_tls,
            timeout=settings.notification_send_timeout_seconds,
        ),
    ]
    return {channel.name: channel for channel in channels}
