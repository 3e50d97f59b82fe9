"""The channels a deployment has, built from its settings; a contact names one by `channel`."""

from __future__ import annotations

import aiohttp
from pydantic import SecretStr

from services.notification.channels import Channel
from services.notification.channels.email import EmailChannel
from services.notification.channels.file import FileChannel
from services.notification.channels.gateways import AliyunSmsChannel, JsonGatewayChannel
from services.notification.channels.http import http_client
from services.notification.channels.robots import DingTalkChannel, WeComChannel
from services.notification.channels.webhook import SecretOf, WebhookChannel
from services.notification.guard import limits_for
from services.notification.templates import Form
from shared.domain.directory import Directory
from shared.production import Gap, public_url_gaps, secret_gaps
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


# What each gateway channel needs before it can send anything.
GATEWAY_SETTINGS: dict[str, tuple[str, ...]] = {
    "sms": ("notification_sms_url", "notification_sms_token"),
    "voice": ("notification_voice_url", "notification_voice_token"),
    "aliyun_sms": (
        "notification_aliyun_access_key_id",
        "notification_aliyun_access_key_secret",
        "notification_aliyun_sms_sign_name",
        "notification_aliyun_sms_template_code",
    ),
}


def production_gaps(settings: Settings, directory: Directory) -> list[Gap]:
    """What notification needs in production: one acknowledgement key for every replica, links
    people can open, and for every contact of the directory a channel that really reaches
    somebody, signed or encrypted where the channel can be."""
    gaps = [
        *secret_gaps(
            "NOTIFICATION_ACK_SECRET",
            settings.notification_ack_secret,
            "each replica would sign acknowledgement links with its own random key, so an "
            "acknowledgement reaching another replica is refused and the alert escalates",
        ),
        *public_url_gaps("NOTIFICATION_PUBLIC_BASE_URL", settings.notification_public_base_url),
        *public_url_gaps("NOTIFICATION_RECORD_BASE_URL", settings.notification_record_base_url),
    ]
    secret = settings.notification_ack_secret
    if secret is not None and len(secret.get_secret_value().encode()) < 32:
        gaps.append(Gap("NOTIFICATION_ACK_SECRET", "shorter than 32 bytes"))
    channels_used: dict[str, set[str]] = {}
    for party in directory.parties:
        if not party.drill_contacts:
            gaps.append(
                Gap(
                    "DIRECTORY_FILE",
                    f"party {party.code} has no drill_contacts: its drill alerts (R16) would go "
                    "to the local file",
                )
            )
        for contact in (*party.contacts, *party.drill_contacts):
            channels_used.setdefault(contact.channel, set()).add(contact.address or "")
    if "file" in channels_used:
        gaps.append(Gap("DIRECTORY_FILE", "contacts use the file channel, which reaches nobody"))
    signed = secret_lookup(settings, fallback=True)
    unsigned = sorted(a for a in channels_used.get("webhook", ()) if signed(a) is None)
    if unsigned:
        gaps.append(
            Gap(
                "NOTIFICATION_WEBHOOK_SECRET",
                f"webhook contacts {unsigned} would get unsigned alerts (no default or "
                "per-contact secret)",
            )
        )
    for channel, names in GATEWAY_SETTINGS.items():
        if channel in channels_used:
            gaps.extend(
                Gap(name.upper(), f"contacts use the {channel} channel")
                for name in names
                if getattr(settings, name) in (None, "")
            )
    if "email" in channels_used and not (
        settings.notification_smtp_starttls or settings.notification_smtp_tls
    ):
        gaps.append(
            Gap(
                "NOTIFICATION_SMTP_STARTTLS/NOTIFICATION_SMTP_TLS",
                "e-mail contacts would be sent in plaintext SMTP",
            )
        )
    return gaps


def build_channels(settings: Settings) -> dict[str, Channel]:
    def client(channel: str) -> aiohttp.ClientSession:
        """One HTTP client per channel, so a hung gateway exhausts no other channel's
        connections, keeping alive as many connections as the channel has sends in flight at
        most: with fewer, every burst past them would close connections and open them
        again."""
        return http_client(
            limits_for(channel, settings).concurrency, settings.notification_send_timeout_seconds
        )

    channels: list[Channel] = [
        FileChannel(settings.alerts_file),
        WebhookChannel(client("webhook"), secret_lookup(settings, fallback=True)),
        WeComChannel(client("wecom"), secret_lookup(settings, fallback=False)),
        DingTalkChannel(client("dingtalk"), secret_lookup(settings, fallback=False)),
        JsonGatewayChannel(
            "sms",
            Form.SMS,
            client("sms"),
            settings.notification_sms_url,
            _plain(settings.notification_sms_token),
        ),
        JsonGatewayChannel(
            "voice",
            Form.VOICE,
            client("voice"),
            settings.notification_voice_url,
            _plain(settings.notification_voice_token),
            extra={"repeat": 2},
        ),
        AliyunSmsChannel(
            client("aliyun_sms"),
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
