"""Settings helpers (shared/settings.py)."""

from __future__ import annotations

import pytest

from shared.settings import Settings, to_asyncpg_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/esc", "postgresql+asyncpg://u:p@db:5432/esc"),
        ("postgres://u:p@db/esc", "postgresql+asyncpg://u:p@db/esc"),
        ("postgresql+asyncpg://u@db/esc", "postgresql+asyncpg://u@db/esc"),
        ("postgresql:///esc?host=/tmp/pg", "postgresql+asyncpg:///esc?host=/tmp/pg"),
    ],
)
def test_to_asyncpg_url(url, expected):
    assert to_asyncpg_url(url) == expected


@pytest.mark.parametrize(
    "url", ["mysql://u@db/esc", "sqlite:///esc.db", "postgresql+psycopg://u@db/esc", ""]
)
def test_to_asyncpg_url_refuses_other_urls(url):
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        to_asyncpg_url(url)


def test_settings_derive_both_url_forms():
    settings = Settings(database_url="postgres://u:p@db/esc")
    assert settings.async_database_url == "postgresql+asyncpg://u:p@db/esc"
    assert settings.plain_database_url == "postgresql://u:p@db/esc"


def test_settings_without_database_url_refuse_to_guess():
    with pytest.raises(RuntimeError, match="DATABASE_URL is not set"):
        _ = Settings(database_url=None).async_database_url


def test_retention_defaults_are_minutes_apart_and_a_week_long():
    settings = Settings()
    assert settings.retention_sweep_interval_seconds >= 60  # idle CPU: minutes, not ms
    assert settings.intake_idempotency_key_retention_hours == 7 * 24
    assert settings.notification_message_retention_hours == 7 * 24


def test_a_sent_message_is_kept_at_least_as_long_as_its_acknowledgement_link_lives():
    Settings(notification_message_retention_hours=24, notification_ack_token_ttl_seconds=86400)
    with pytest.raises(ValueError, match="must not outlive the message"):
        Settings(notification_message_retention_hours=23, notification_ack_token_ttl_seconds=86400)
