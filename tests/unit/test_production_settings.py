"""Production stops at start when a secret or setting is missing; development never does."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from services.audit.checkpoints import signing_key_gaps
from services.audit.note import Signer
from services.notification.channels.registry import production_gaps
from shared import pii
from shared.auth import ensure_dev_keys
from shared.domain.directory import Contact, Directory
from shared.production import (
    ProductionSettingsError,
    common_gaps,
    public_url_gaps,
    require_production_settings,
)
from shared.settings import REPOSITORY_ROOT, Settings

PROD_DIRECTORY = REPOSITORY_ROOT / "deploy" / "k8s" / "overlays" / "prod" / "files"


def production(tmp_path: Path, **changes: object) -> Settings:
    """Settings a production deployment gives a service: nothing missing."""
    _, jwks = ensure_dev_keys(tmp_path / "jwt")
    values: dict[str, object] = {
        "deployment_environment": "production",
        "database_url": "postgresql://intake@db:5432/app",
        "database_password": "from-the-operator",
        "kafka_bootstrap_servers": "events-kafka-bootstrap:9093",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_username": "intake",
        "kafka_sasl_password": "from-strimzi",
        "migrate_on_startup": False,
        "auth_jwks_file": jwks,
        "pii_keys": {"k1": base64.b64encode(bytes(32)).decode()},
        "pii_current_key_id": "k1",
        "notification_ack_secret": "x" * 32,
        "notification_webhook_secret": "y" * 32,
        "notification_public_base_url": "https://correction-emergency.example",
        "notification_record_base_url": "https://correction-emergency.example/v1/incidents",
    }
    values.update(changes)
    return Settings(**values)


def named(gaps: list) -> set[str]:
    return {gap.setting for gap in gaps}


def test_a_complete_production_configuration_has_no_gap(tmp_path: Path) -> None:
    settings = production(tmp_path)
    directory = Directory.load(PROD_DIRECTORY / "directory.yaml")
    assert common_gaps(settings) == []
    assert pii.production_gaps(settings) == []
    assert production_gaps(settings, directory) == []


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"database_url": None}, "DATABASE_URL"),
        ({"kafka_bootstrap_servers": None}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"kafka_sasl_password": None}, "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD"),
        ({"auth_jwks_file": None}, "AUTH_JWKS_FILE"),
        ({"auth_jwks_file": Path("/nonexistent/jwks.json")}, "AUTH_JWKS_FILE"),
        ({"migrate_on_startup": True}, "MIGRATE_ON_STARTUP"),
        ({"kafka_ssl_cafile": Path("/nonexistent/ca.crt")}, "KAFKA_SSL_CAFILE"),
    ],
)
def test_every_service_needs_its_database_broker_and_callers_keys(
    tmp_path: Path, change: dict, setting: str
) -> None:
    assert setting in named(common_gaps(production(tmp_path, **change)))


def test_a_jwks_file_without_keys_is_a_gap(tmp_path: Path) -> None:
    empty = tmp_path / "jwks.json"
    empty.write_text('{"keys": []}', encoding="utf-8")
    assert named(common_gaps(production(tmp_path, auth_jwks_file=empty))) == {"AUTH_JWKS_FILE"}


def test_the_personal_data_key_is_required_where_it_is_used(tmp_path: Path) -> None:
    assert named(pii.production_gaps(production(tmp_path, pii_keys={}))) == {"PII_KEYS"}
    unnamed = production(tmp_path, pii_current_key_id=None)
    assert named(pii.production_gaps(unnamed)) == {"PII_CURRENT_KEY_ID"}
    elsewhere = production(tmp_path, pii_current_key_id="k2")
    assert named(pii.production_gaps(elsewhere)) == {"PII_KEYS"}
    short = production(tmp_path, pii_keys={"k1": base64.b64encode(bytes(16)).decode()})
    assert "not 32 bytes" in str(pii.production_gaps(short)[0])


def test_audit_signs_with_its_own_key_never_a_generated_one(tmp_path: Path) -> None:
    settings = production(tmp_path)
    assert named(signing_key_gaps(settings)) == {"AUDIT_SIGNING_KEY_FILE"}
    missing = production(tmp_path, audit_signing_key_file=tmp_path / "absent.key")
    assert "does not exist" in str(signing_key_gaps(missing)[0])
    key_file = tmp_path / "signing.key"
    key_file.write_text(Signer.generate("another.example/log").skey, encoding="utf-8")
    wrong_log = production(tmp_path, audit_signing_key_file=key_file)
    assert "another.example/log" in str(signing_key_gaps(wrong_log)[0])
    key_file.write_text(Signer.generate(settings.audit_log_origin).skey, encoding="utf-8")
    assert signing_key_gaps(production(tmp_path, audit_signing_key_file=key_file)) == []


def test_notification_needs_one_ack_key_for_every_replica_and_public_links(
    tmp_path: Path,
) -> None:
    directory = Directory.load(PROD_DIRECTORY / "directory.yaml")
    gaps = production_gaps(
        production(
            tmp_path,
            notification_ack_secret=None,
            notification_public_base_url="http://127.0.0.1:8003",
            notification_record_base_url="https://localhost/v1/incidents",
        ),
        directory,
    )
    assert named(gaps) == {
        "NOTIFICATION_ACK_SECRET",
        "NOTIFICATION_PUBLIC_BASE_URL",
        "NOTIFICATION_RECORD_BASE_URL",
    }
    short = production(tmp_path, notification_ack_secret="short")
    assert named(production_gaps(short, directory)) == {"NOTIFICATION_ACK_SECRET"}


def test_no_development_channel_applies_silently_in_production(tmp_path: Path) -> None:
    settings = production(tmp_path, notification_webhook_secret=None)
    development = Directory.load(REPOSITORY_ROOT / "config" / "directory.yaml")
    gaps = production_gaps(settings, development)
    # File contacts reach nobody, and drills without drill contacts would go to the file.
    assert "DIRECTORY_FILE" in named(gaps)
    assert any("file channel" in gap.why for gap in gaps)
    assert any("drill_contacts" in gap.why for gap in gaps)
    # Webhooks would go unsigned without a default or per-contact secret.
    production_directory = Directory.load(PROD_DIRECTORY / "directory.yaml")
    assert named(production_gaps(settings, production_directory)) == {"NOTIFICATION_WEBHOOK_SECRET"}


def test_gateways_and_mail_need_their_credentials_and_tls(tmp_path: Path) -> None:
    base = Directory.load(PROD_DIRECTORY / "directory.yaml")
    first = base.parties[0]
    contacts = (
        Contact(channel="email", address="duty@example.gov.cn"),
        Contact(channel="aliyun_sms", address="13900000000"),
    )
    directory = base.model_copy(
        update={"parties": (first.model_copy(update={"contacts": contacts}), *base.parties[1:])}
    )
    gaps = named(production_gaps(production(tmp_path), directory))
    assert "NOTIFICATION_SMTP_STARTTLS/NOTIFICATION_SMTP_TLS" in gaps
    assert "NOTIFICATION_ALIYUN_ACCESS_KEY_SECRET" in gaps
    secured = production(
        tmp_path,
        notification_smtp_starttls=True,
        notification_aliyun_access_key_id="id",
        notification_aliyun_access_key_secret="secret",
        notification_aliyun_sms_sign_name="乌审旗司法局",
        notification_aliyun_sms_template_code="SMS_1",
    )
    assert production_gaps(secured, directory) == []


def test_public_links_must_be_https_on_a_reachable_host() -> None:
    assert public_url_gaps("X", "https://correction-emergency.example") == []
    assert public_url_gaps("X", "http://correction-emergency.example")
    assert public_url_gaps("X", "https://127.0.0.1:8003")


def test_production_stops_with_every_gap_named_and_development_is_never_checked(
    tmp_path: Path,
) -> None:
    lacking = production(tmp_path, auth_jwks_file=None, migrate_on_startup=True)
    with pytest.raises(ProductionSettingsError) as stopped:
        require_production_settings(lacking, "intake", pii.production_gaps(lacking))
    message = str(stopped.value)
    assert message.startswith("intake will not start in production: 2 setting(s)")
    assert "AUTH_JWKS_FILE: not set" in message and "MIGRATE_ON_STARTUP" in message
    development = lacking.model_copy(update={"deployment_environment": "development"})
    require_production_settings(development, "intake", pii.production_gaps(development))
