"""What production needs before a service may start.

With `DEPLOYMENT_ENVIRONMENT=production` a service checks, before it builds anything, that every
secret and setting it needs is given and none of the development defaults would apply (a key
generated on the spot, links to 127.0.0.1, unsigned webhooks, plaintext SMTP, a file channel).
A gap stops the start with one message naming each setting and why it matters, rather than a
pod that runs and fails later (every route 401, acknowledgements refused on other replicas).
docs/operations.md lists the same settings for the people who deploy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shared.settings import Settings

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


@dataclass(frozen=True)
class Gap:
    """A setting production needs and lacks (or has in a form that is unsafe there)."""

    setting: str
    why: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.why}"


class ProductionSettingsError(RuntimeError):
    """The service would start in production with a setting missing or unsafe."""

    def __init__(self, service: str, gaps: list[Gap]) -> None:
        self.gaps = gaps
        lines = "\n".join(f"  - {gap}" for gap in gaps)
        super().__init__(
            f"{service} will not start in production: {len(gaps)} setting(s) missing or "
            f"unsafe (see docs/operations.md, 'Secrets and settings'):\n{lines}"
        )


def require_production_settings(settings: Settings, service: str, gaps: Iterable[Gap]) -> None:
    """Stop the start when production lacks something; development is never checked."""
    if settings.deployment_environment != "production":
        return
    found = [*common_gaps(settings), *gaps]
    if found:
        raise ProductionSettingsError(service, found)


def common_gaps(settings: Settings) -> list[Gap]:
    """What every service needs: its database, its broker, the callers' public keys."""
    gaps: list[Gap] = []
    if not settings.database_url:
        gaps.append(Gap("DATABASE_URL", "not set"))
    if not settings.kafka_bootstrap_servers:
        gaps.append(Gap("KAFKA_BOOTSTRAP_SERVERS", "not set"))
    if settings.kafka_security_protocol.startswith("SASL_") and (
        not settings.kafka_sasl_username or settings.kafka_sasl_password is None
    ):
        gaps.append(
            Gap(
                "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD",
                f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs the "
                "service's broker user and password",
            )
        )
    if settings.kafka_ssl_cafile is not None:
        gaps.extend(file_gaps("KAFKA_SSL_CAFILE", settings.kafka_ssl_cafile))
    if settings.migrate_on_startup:
        gaps.append(
            Gap(
                "MIGRATE_ON_STARTUP",
                "must be false: the migration job applies the schema with the owner's login; "
                "the service's own login owns nothing",
            )
        )
    if settings.auth_jwks_file is None:
        gaps.append(Gap("AUTH_JWKS_FILE", "not set: no bearer token could be verified (401)"))
    else:
        gaps.extend(_jwks_gaps(settings.auth_jwks_file))
    return gaps


def _jwks_gaps(path: Path) -> list[Gap]:
    missing = file_gaps("AUTH_JWKS_FILE", path)
    if missing:
        return missing
    try:
        keys = json.loads(path.read_text(encoding="utf-8")).get("keys")
    except (ValueError, AttributeError):
        keys = None
    if not keys:
        return [Gap("AUTH_JWKS_FILE", f"{path} holds no JSON Web Key Set with keys")]
    return []


def file_gaps(setting: str, path: Path | None) -> list[Gap]:
    """A file setting that must name a file that is there."""
    if path is None:
        return [Gap(setting, "not set")]
    if not path.is_file():
        return [Gap(setting, f"{path} does not exist (is the Secret mounted?)")]
    return []


def public_url_gaps(setting: str, url: str) -> list[Gap]:
    """A link people open from an alert: HTTPS, on a host they can reach."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return [Gap(setting, f"{url!r} is not an https URL")]
    if (parts.hostname or "") in LOOPBACK_HOSTS:
        return [Gap(setting, f"{url!r} points at this machine, not at the public ingress")]
    return []


def secret_gaps(setting: str, value: object | None, why: str) -> list[Gap]:
    return [Gap(setting, f"not set: {why}")] if value is None or value == "" else []
