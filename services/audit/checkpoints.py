"""Signed checkpoints: whenever the log has grown, about once a second, sign and publish one.

Audit consumes `audit.v1` too, so its own checkpoint events come back as leaves. A checkpoint
is signed only when something other than checkpoint events was appended since the last one:
the leaf of a checkpoint is covered by the next checkpoint some real event calls for, and no
checkpoint is ever signed because of a checkpoint. Before signing, the new root is proved
consistent with the last signed one, so the log never signs two checkpoints that disagree.

The first checkpoint of a log that already held leaves when the checkpointer first looked
(restored from a backup, imported, its checkpoints lost) would bless whatever the database holds:
it is refused until an operator confirms the number of leaves they checked
(`AUDIT_CONFIRMED_FIRST_CHECKPOINT_SIZE`); the first checkpoint then covers exactly that many,
and the leaves after them are signed by the next one, like any new leaves.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit import store
from services.audit.merkle import ProofError, verify_consistency
from services.audit.models import checkpoints, log_entries
from services.audit.note import Checkpoint, Signer, Verifier
from shared.events import CloudEvent
from shared.events.models import LogCheckpoint
from shared.messaging import Outbox
from shared.production import Gap, file_gaps
from shared.runtime import ServiceRuntime
from shared.settings import Settings

log = logging.getLogger(__name__)

SOURCE = "audit"
CHECKPOINT_TYPE = LogCheckpoint.ce_type
# DESIGN.md: checkpoints travel under the key `log`.
CHECKPOINT_SUBJECT = "log"
DEV_KEY_FILE = "audit-signing.key"
# The checkpointer looks at the log this often even when no append wakes it (a fallback).
IDLE_LOOK_SECONDS = 60.0


def signing_key_gaps(settings: Settings) -> list[Gap]:
    """Production signs with the log's own key, never one generated on the spot."""
    if settings.audit_signing_key_seed:
        return []
    if settings.audit_signing_key_file is None:
        return [
            Gap(
                "AUDIT_SIGNING_KEY_FILE",
                "not set: checkpoints would be signed by a key generated on the spot, which no "
                "witness or verifier knows",
            )
        ]
    gaps = file_gaps("AUDIT_SIGNING_KEY_FILE", settings.audit_signing_key_file)
    if not gaps:
        try:
            load_signer(settings)
        except ValueError as error:
            gaps.append(Gap("AUDIT_SIGNING_KEY_FILE", str(error)))
    return gaps


def load_signer(settings: Settings) -> Signer:
    """The log's key: a key file, a base64 seed, or a dev key kept in `local_data_dir`."""
    origin = settings.audit_log_origin
    if settings.audit_signing_key_file is not None:
        signer = Signer.parse(settings.audit_signing_key_file.read_text(encoding="utf-8"))
        if signer.name != origin:
            raise ValueError(f"the signing key is named {signer.name!r}, the log {origin!r}")
        return signer
    if settings.audit_signing_key_seed:
        return Signer.from_seed(origin, base64.b64decode(settings.audit_signing_key_seed))
    path = settings.local_data_dir / DEV_KEY_FILE
    if path.exists():
        signer = Signer.parse(path.read_text(encoding="utf-8"))
        if signer.name == origin:
            return signer
    signer = Signer.generate(origin)
    write_private_file(path, signer.skey + "\n")
    log.warning("generated a development signing key; its verifier key is %s", signer.verifier.vkey)
    return signer


def write_private_file(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(content)


def witness_keys(settings: Settings) -> list[Verifier]:
    return [Verifier.parse(vkey) for vkey in settings.audit_witness_keys.replace(",", " ").split()]


def needs_checkpoint(last_size: int | None, size: int, grew_by_other_events: bool) -> bool:
    """Sign when the log holds leaves the last checkpoint does not, not all checkpoints."""
    if size == 0 or size == last_size:
        return False
    return last_size is None or grew_by_other_events


def first_checkpoint_refusal(existing: int, size: int, confirmed: int | None) -> str | None:
    """Why the first checkpoint may not be signed, or None. `existing`: the leaves the log held
    when the checkpointer first looked; `size`: it holds now; `confirmed`: the operator's count."""
    if existing == 0:
        return None  # a new log: its first leaves were appended by this service
    if confirmed is None:
        return (
            f"the log held {existing} leaves and no signed checkpoint: check them and confirm "
            f"their number (AUDIT_CONFIRMED_FIRST_CHECKPOINT_SIZE) before the log signs them"
        )
    if confirmed > size:
        return f"the operator confirmed {confirmed} leaves, the log holds only {size}"
    return None


@dataclass
class Checkpointer:
    runtime: ServiceRuntime
    signer: Signer
    outbox: Outbox
    interval_seconds: float = 1.0
    confirmed_first_size: int | None = None
    # The log's size when the checkpointer first found no signed checkpoint.
    _existing: int | None = field(default=None, init=False)
    _refused: str | None = field(default=None, init=False)

    async def run(self) -> None:
        """A checkpoint at most every `interval_seconds`, and only after appends: between them
        the checkpointer sleeps (the log notifies each append at its commit)."""
        appended = self.runtime.listener.wakeup(store.APPENDED_CHANNEL)
        try:
            while True:
                await self.checkpoint_once()
                await asyncio.sleep(self.interval_seconds)  # the pace, not a synchronisation
                await appended.wait(IDLE_LOOK_SECONDS)
        finally:
            await appended.close()

    async def checkpoint_once(self) -> Checkpoint | None:
        async with self.runtime.sessions() as session, session.begin():
            await store.act_as_writer(session)
            return await self.sign_if_grown(session)

    async def sign_if_grown(self, session: AsyncSession) -> Checkpoint | None:
        locked = await session.execute(
            select(func.pg_try_advisory_xact_lock(store.CHECKPOINT_LOCK))
        )
        if not locked.scalar_one():
            return None  # another replica is signing
        last = await store.latest_checkpoint(session)
        size = await store.log_size(session)
        last_size = last.size if last is not None else None
        # Only the leaves this checkpoint would cover count: one appended since `size` was read
        # (each statement sees its own snapshot) is for the next checkpoint.
        grew = await session.scalar(
            select(
                exists().where(
                    log_entries.c.index >= (last_size or 0),
                    log_entries.c.index < size,
                    log_entries.c.ce_type != CHECKPOINT_TYPE,
                )
            )
        )
        if last is None and self._existing is None:
            self._existing = size  # the first look: 0 for a new log
        if not needs_checkpoint(last_size, size, bool(grew)):
            return None
        if last is None:
            refusal = first_checkpoint_refusal(self._existing, size, self.confirmed_first_size)
            if refusal is not None:
                if refusal != self._refused:  # once, not every interval
                    log.error("first checkpoint refused: %s", refusal)
                    self._refused = refusal
                return None
            if self._existing:
                size = self.confirmed_first_size or size
            root = await store.root_at(session, size)
        else:
            bundle = await store.consistency_bundle(session, last.size, size)
            root = bundle.new_root
            try:
                verify_consistency(last.size, size, bundle.proof, bytes(last.root_hash), root)
            except ProofError:
                log.critical(
                    "refusing to sign size %d: not consistent with the signed size %d",
                    size,
                    last.size,
                )
                raise
        checkpoint = Checkpoint(self.signer.name, size, root)
        if last is None and self._existing:
            log.warning("first checkpoint signed over %d leaves confirmed by the operator", size)
        note = self.signer.sign(checkpoint.text())
        now = datetime.now(UTC)
        await session.execute(
            insert(checkpoints).values(size=size, root_hash=root, note=note, signed_at=now)
        )
        event = LogCheckpoint(
            origin=checkpoint.origin,
            size=size,
            root_hash=base64.b64encode(root).decode(),
            published_at=now,
            note=note,
        )
        await self.outbox.add(session, CloudEvent.new(SOURCE, event, CHECKPOINT_SUBJECT))
        return checkpoint
