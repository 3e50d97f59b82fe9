"""Personal data at rest: AES-GCM with the key id beside each ciphertext, so keys can rotate.

Keys come from the environment (`PII_KEYS`, a JSON map of key id → base64 of 32 bytes, e.g.
from a Kubernetes Secret) with `PII_CURRENT_KEY_ID` naming the one new writes use. Old keys stay
listed until every row has been re-sealed with the current one; the subjects sealed on events
(`sealed_subjects`) stay in the append-only audit log as they were, so audit keeps a key as long
as reports of incidents sealed with it are to show their subjects in clear.

Every read of personal data in clear leaves a trace (社区矫正法 Art. 54): `record_read`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeGuard
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from shared.domain.access import Principal
from shared.events import CloudEvent
from shared.events.models import PersonalDataRead, PersonalDataReadInAudit, Sealed
from shared.jsontext import from_json, json_bytes
from shared.messaging import Outbox
from shared.production import Gap
from shared.settings import Settings

SEALED = "sealed"
SUBJECTS = "subjects"
# What is sealed in stored facts: the subjects (names, ID numbers) and the free text, where
# reporters write names, ID numbers and addresses too.
SEALED_FIELDS = ("subjects", "location", "summary", "measures_taken", "persons_involved")
# What is sealed of a reporter as stored: the phone. The party says who reported; the name is
# the officer's own, shown to whoever may read the incident.
REPORTER_SEALED_FIELDS = ("phone",)


class PersonalDataKeyError(RuntimeError):
    pass


def production_gaps(settings: Settings) -> list[Gap]:
    """A service that seals or opens personal data needs its keys, whole and consistent."""
    if not settings.pii_keys:
        return [Gap("PII_KEYS", "not set: personal data could be neither sealed nor opened")]
    if settings.pii_current_key_id is None:
        return [Gap("PII_CURRENT_KEY_ID", "not set: which key seals new personal data?")]
    try:
        PiiCipher.from_settings(settings)
    except (PersonalDataKeyError, ValueError) as error:
        return [Gap("PII_KEYS", str(error))]
    return []


@dataclass(frozen=True)
class PiiCipher:
    keys: dict[str, bytes]
    current: str
    # Each key's AES-GCM, made once: making it is more than half the cost of sealing a field.
    _aeads: dict[str, AESGCM] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_aeads", {key_id: AESGCM(key) for key_id, key in self.keys.items()}
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> PiiCipher:
        """The configured cipher; without keys, one that refuses to seal or open anything (and
        a service using it reports itself not ready) rather than one that stores clear text."""
        return cls.of(settings.pii_keys, settings.pii_current_key_id, "PII_KEYS")

    @classmethod
    def of(
        cls, secrets: Mapping[str, SecretStr], current_id: str | None, setting: str
    ) -> PiiCipher:
        """A cipher of base64 AES-256 keys by id, `current_id` (default: the last id) sealing;
        `setting` names where they come from in errors."""
        if not secrets:
            return cls({}, "")
        keys = {
            key_id: base64.b64decode(secret.get_secret_value())
            for key_id, secret in secrets.items()
        }
        current = current_id or sorted(keys)[-1]
        if current not in keys:
            raise PersonalDataKeyError(f"the current key {current!r} is not in {setting}")
        for key_id, key in keys.items():
            if len(key) != 32:
                raise PersonalDataKeyError(f"{setting} key {key_id!r} is not 32 bytes")
        return cls(keys, current)

    @property
    def readiness(self) -> str:
        return "ok" if self.keys else "PII_KEYS not set: personal data cannot be sealed or opened"

    def seal(self, value: Any, context: str) -> dict[str, str]:
        """Encrypt a JSON value; `context` (what it is) is authenticated, not secret."""
        if not self.keys:
            raise PersonalDataKeyError("PII_KEYS is not set: personal data cannot be stored")
        nonce = os.urandom(12)
        plaintext = json_bytes(value)
        ciphertext = self._aeads[self.current].encrypt(nonce, plaintext, context.encode())
        return {
            "kid": self.current,
            "nonce": base64.b64encode(nonce).decode(),
            "ct": base64.b64encode(ciphertext).decode(),
        }

    def open(self, sealed: dict[str, str], context: str) -> Any:
        aead = self._aeads.get(sealed["kid"])
        if aead is None:
            raise PersonalDataKeyError(f"no PII key {sealed['kid']!r} to open this record")
        plaintext = aead.decrypt(
            base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["ct"]), context.encode()
        )
        return from_json(plaintext)

    def seal_subjects(
        self, facts: dict[str, Any], fields: tuple[str, ...] = SEALED_FIELDS
    ) -> dict[str, Any]:
        """Facts as stored: personal fields (`fields`) sealed, everything else as is."""
        return {
            name: {SEALED: self.seal(value, name)}
            if name in fields and value is not None and not is_sealed(value)
            else value
            for name, value in facts.items()
        }

    def seal_reporter(self, reporter: dict[str, Any]) -> dict[str, Any]:
        """A reporter as stored: the phone sealed (`open_subjects` opens it)."""
        return self.seal_subjects(reporter, REPORTER_SEALED_FIELDS)

    def seal_value(self, value: Any, context: str) -> dict[str, Any] | None:
        """One value as stored in a column of its own (a report's text, an actor's name):
        sealed under `context`, the column's name; nothing stays nothing."""
        if value is None or is_sealed(value):
            return value
        return {SEALED: self.seal(value, context)}

    def open_value(self, stored: Any, context: str) -> Any:
        return self.open(stored[SEALED], context) if is_sealed(stored) else stored

    def resealed_value(self, stored: Any, context: str) -> Any:
        """A value `seal_value` stored, sealed with the current key (sealed now if clear)."""
        if stored is None:
            return None
        return {SEALED: self.seal(self.open_value(stored, context), context)}

    def value_needs_resealing(self, stored: Any) -> bool:
        """Whether a column `seal_value` fills holds clear text or another key's ciphertext."""
        if stored is None:
            return False
        return not is_sealed(stored) or stored[SEALED]["kid"] != self.current

    def open_subjects(self, facts: dict[str, Any]) -> dict[str, Any]:
        return {
            name: self.open(value[SEALED], name) if is_sealed(value) else value
            for name, value in facts.items()
        }

    def resealed_fields(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Facts or a reporter as stored, each sealed field sealed again with the current key."""
        return {
            name: {SEALED: self.seal(self.open(value[SEALED], name), name)}
            if is_sealed(value)
            else value
            for name, value in stored.items()
        }

    def needs_resealing(self, facts: dict[str, Any]) -> bool:
        return any(
            is_sealed(value) and value[SEALED]["kid"] != self.current for value in facts.values()
        )


def sealed_subjects(sealed_facts: dict[str, Any]) -> Sealed | None:
    """The subjects of facts as `seal_subjects` stored them, as events carry them."""
    value = sealed_facts.get(SUBJECTS)
    return Sealed(**value[SEALED]) if is_sealed(value) else None


SUBJECT_FIELDS = ("subjects.name", "subjects.id_number")


async def record_read(
    outbox: Outbox,
    session: AsyncSession,
    source: str,
    incident_id: UUID,
    reader: Principal,
    fields: tuple[str, ...],
) -> None:
    """Stage the trace of the read in the transaction that serves it, on the serving service's
    own topic: `incident.personal_data_read` from intake, `audit.personal_data_read` from audit."""
    trace = PersonalDataReadInAudit if source == "audit" else PersonalDataRead
    read = trace(
        incident_id=incident_id,
        party=reader.party,
        subject=reader.subject,
        fields=fields,
        read_at=datetime.now(UTC),
    )
    await outbox.add(session, CloudEvent.new(source, read, incident_id))


def new_key() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def is_sealed(value: Any) -> TypeGuard[dict[str, Any]]:
    """A value as `seal_subjects` stores a field: {"sealed": {kid, nonce, ct}}."""
    return isinstance(value, dict) and len(value) == 1 and SEALED in value
