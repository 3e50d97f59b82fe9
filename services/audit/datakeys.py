"""The incidents' data keys in PostgreSQL: made when an incident's first personal data is logged,
wrapped under the service's key-encryption key (KEK), marked when the incident closes, and
erased by the retention job once the policy's period has passed (`personal.py` says what they
seal; migration 0006 why this table is not append-only).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, null, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.logged import Read, StoredLeaf, events_of, read_leaves
from services.audit.models import data_keys
from services.audit.personal import Opened, open_personal, seal_personal
from shared.driver import fetch
from shared.pii import SEALED, PersonalDataKeyError, PiiCipher, new_key
from shared.production import Gap
from shared.settings import Settings

log = logging.getLogger(__name__)

# Leaves without it have nothing to open (JSON as canonical_json writes it: no blanks).
SEALED_MARK = f'"{SEALED}":{{'.encode()

DEV_KEK_FILE = "audit-key-encryption.json"
_NONE: Any = object()  # no key was ever made
# The statuses in which an incident counts as closed, from when it first reached one.
CLOSED_STATUSES = frozenset({"CLOSED", "REVIEWED"})


def key_encryption_gaps(settings: Settings) -> list[Gap]:
    """Production wraps the incidents' data keys under its own key, kept outside the pods: a
    key made in a pod dies with it, and every data key it wrapped with it."""
    if not settings.audit_key_encryption_keys:
        return [
            Gap(
                "AUDIT_KEY_ENCRYPTION_KEYS",
                "not set: the log could not seal personal data under keys that survive a restart",
            )
        ]
    try:
        load_key_encryption_key(settings)
    except (PersonalDataKeyError, ValueError) as error:
        return [Gap("AUDIT_KEY_ENCRYPTION_KEYS", str(error))]
    return []


def load_key_encryption_key(settings: Settings) -> PiiCipher:
    """The KEK: AUDIT_KEY_ENCRYPTION_KEYS, or (never in production) a development key kept in
    `local_data_dir`; a bad key stops the start."""
    if settings.audit_key_encryption_keys:
        return PiiCipher.of(
            settings.audit_key_encryption_keys,
            settings.audit_key_encryption_key_id,
            "AUDIT_KEY_ENCRYPTION_KEYS",
        )
    if settings.deployment_environment == "production":
        raise PersonalDataKeyError(
            "AUDIT_KEY_ENCRYPTION_KEYS is not set: the log cannot seal personal data"
        )
    path = settings.local_data_dir / DEV_KEK_FILE
    keys = _development_keys(path)
    log.warning("personal data in the log is sealed under a development key in %s", path)
    return PiiCipher({key_id: base64.b64decode(key) for key_id, key in keys.items()}, "local-1")


def _development_keys(path: Path) -> dict[str, str]:
    """Made once and shared by every process using the folder: created exclusively, so two
    starting at once read the same key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return json.loads(path.read_text(encoding="utf-8"))
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        keys = {"local-1": new_key()}
        file.write(json.dumps(keys))
    return keys


def incident_cipher(incident: str, key: bytes) -> PiiCipher:
    """Seals and opens the personal fields of the incident's leaves: the kid is the incident."""
    return PiiCipher({incident: key}, incident)


# Statements of constant text, the incidents as one array: each batch of the consumer asks for
# its incidents' keys, and SQLAlchemy compiles an IN list or a multi-row VALUES anew for every
# count of incidents, which cost more than the statements themselves.
STORED_KEYS = text(
    "SELECT incident, wrapped FROM audit.data_keys WHERE incident = ANY(CAST(:incidents AS text[]))"
)
# An append's keys in one round trip where there were two (a look, then an insert of those
# missing): a key is offered for every incident and kept only where none is stored (nor erased);
# the keys stored before the statement come with those it made. Wrapping a key that is thrown
# away costs microseconds, a round trip a third of a millisecond on each side. A key another
# consumer made after the statement's snapshot is among neither: it is read after.
KEYS_FOR_APPEND = text(
    "WITH made AS (INSERT INTO audit.data_keys (incident, wrapped) "
    "SELECT incident, CAST(wrapped AS jsonb) FROM unnest("
    "CAST(:incidents AS text[]), CAST(:wrapped AS text[])) AS made(incident, wrapped) "
    "ON CONFLICT (incident) DO NOTHING RETURNING incident, wrapped) "
    "SELECT incident, wrapped FROM made UNION ALL "
    "SELECT incident, wrapped FROM audit.data_keys WHERE incident = ANY(CAST(:incidents AS text[]))"
)


@dataclass(frozen=True)
class DataKeys:
    kek: PiiCipher

    def _context(self, incident: str) -> str:
        return f"data key of {incident}"

    def _unwrapped(self, incident: str, wrapped: Mapping[str, str] | None) -> PiiCipher | None:
        if wrapped is None:
            return None  # erased
        key = base64.b64decode(self.kek.open(dict(wrapped), self._context(incident)))
        return incident_cipher(incident, key)

    async def for_append(
        self, session: AsyncSession, incidents: Iterable[str]
    ) -> dict[str, PiiCipher | None]:
        """Each incident's data key, made for those that have none yet; None: erased."""
        wanted = sorted(set(incidents))
        if not wanted:
            return {}
        offered = [
            json.dumps(self.kek.seal(new_key(), self._context(incident))) for incident in wanted
        ]
        stored: dict[str, Any] = dict.fromkeys(wanted, _NONE)
        rows = await fetch(session, KEYS_FOR_APPEND, {"incidents": wanted, "wrapped": offered})
        stored.update({incident: wrapped for incident, wrapped in rows})
        # Another consumer may make the same key at once: the first one made is the key, read
        # once it committed (this statement's snapshot could not see it).
        beaten = [incident for incident in wanted if stored[incident] is _NONE]
        if beaten:
            stored |= await self._stored(session, beaten)
        return {incident: self._unwrapped(incident, row) for incident, row in stored.items()}

    async def of(
        self, session: AsyncSession, incidents: Iterable[str]
    ) -> dict[str, PiiCipher | None]:
        """The incidents' data keys as they stand: None for an erased one or none at all."""
        stored = await self._stored(session, incidents)
        return {
            incident: None if row is _NONE else self._unwrapped(incident, row)
            for incident, row in stored.items()
        }

    async def _stored(self, session: AsyncSession, incidents: Iterable[str]) -> dict[str, Any]:
        """Each incident's wrapped key: None once erased, _NONE when it has none."""
        wanted = sorted(set(incidents))
        found: dict[str, Any] = dict.fromkeys(wanted, _NONE)
        if wanted:
            rows = await session.execute(STORED_KEYS, {"incidents": wanted})
            found.update({incident: wrapped for incident, wrapped in rows})
        return found

    async def opened(
        self, session: AsyncSession, leaves: Iterable[tuple[str, dict]]
    ) -> list[tuple[dict, Opened]]:
        """(subject, leaf document) pairs with their personal fields opened."""
        listed = list(leaves)
        keys = await self.of(session, [subject for subject, _ in listed])
        result = []
        for subject, document in listed:
            found = Opened()
            result.append((open_personal(document, keys.get(subject), found), found))
        return result

    async def sealed(self, session: AsyncSession, incident: str, data: dict) -> dict:
        """A judgement's data (a finding, review or record) as audit keeps it in its tables:
        its personal fields sealed under the incident's key, erased with it."""
        keys = await self.for_append(session, [incident])
        return seal_personal(data, keys[incident])

    async def opened_data(
        self, session: AsyncSession, rows: Iterable[tuple[str, dict]]
    ) -> list[dict]:
        """(incident, data) of rows of audit's tables, their personal fields opened."""
        return [document for document, _ in await self.opened(session, rows)]

    async def opened_events(
        self,
        session: AsyncSession,
        histories: Mapping[str, Sequence[StoredLeaf]],
        read: Mapping[str, frozenset[str]],
    ) -> dict[str, list[Read]]:
        """Histories of leaves as stored, as the findings read them (`events_of`): each leaf
        read once, the personal fields `read` names for its type opened (or erased); a leaf of
        a type it does not name stays sealed."""
        documents = read_leaves(histories)
        sealed = {
            index: document
            for history in histories.values()
            for index, leaf in history
            if SEALED_MARK in leaf
            and isinstance(document := documents[index], dict)
            and document.get("type") in read
        }
        keys = await self.of(session, [document["subject"] for document in sealed.values()])
        for index, document in sealed.items():
            documents[index] = open_personal(
                document, keys.get(document["subject"]), only=read[document["type"]]
            )
        return events_of(histories, documents)


async def note_closures(session: AsyncSession, closed: Mapping[str, datetime]) -> None:
    """Incidents that reached a closed status, with when: the first closure counts."""
    for incident, at in closed.items():
        await session.execute(
            update(data_keys)
            .where(data_keys.c.incident == incident, data_keys.c.closed_at.is_(None))
            .values(closed_at=at)
        )


async def erase_closed_before(
    session: AsyncSession, moment: datetime
) -> list[tuple[str, datetime]]:
    """Erase the data keys of incidents closed before `moment`: (incident, closed at) of each."""
    erased = await session.execute(
        update(data_keys)
        .where(
            and_(
                data_keys.c.wrapped.is_not(None),
                data_keys.c.closed_at.is_not(None),
                data_keys.c.closed_at < moment,
            )
        )
        .values(wrapped=null(), erased_at=datetime.now(UTC))  # SQL NULL, not JSON null
        .returning(data_keys.c.incident, data_keys.c.closed_at)
    )
    return [(incident, closed_at) for incident, closed_at in erased]
