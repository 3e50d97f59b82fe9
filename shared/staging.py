"""What a transaction stages for its commit: the outbox rows of its events and its NOTIFYs, all
written by one statement just before COMMIT.

Each `Outbox.add` and each `notify` used to be a statement of its own: a routing decision that
changes the incident's status and creates four duties, and wakes the relay and the deadline
worker, cost four round trips for what is one write. Staged, they cost one, whatever a handler
or a batch of events adds: the rows keep the order they were added in (the relay publishes a
key's events in the order of their ids), and a NOTIFY is delivered at commit anyway, once per
channel.

A statement that writes outbox rows itself (a state change and its event in one round trip:
intake's first report, notification's record of an answer) comes before anything staged in its
transaction, so the order of ids is still the order of the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import TextClause, event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

# session.info: what the session's current transaction has staged.
STAGED = "staged_at_commit"

NOTIFY_ALL = text("SELECT pg_notify(channel, '') FROM unnest(CAST(:channels AS text[])) AS channel")


class StagingSession(Session):
    """The services' session: writes what its transaction staged when it commits."""


@dataclass
class Staged:
    transaction: SessionTransaction
    # schema → the rows of its outbox, in the order they were added
    outbox: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    channels: dict[str, None] = field(default_factory=dict)

    def add_rows(self, schema: str, rows: list[dict[str, Any]]) -> None:
        self.outbox.setdefault(schema, []).extend(rows)

    def notify(self, channel: str) -> None:
        self.channels[channel] = None


def staged(session: AsyncSession) -> Staged:
    """What the session's transaction stages for its commit (the transaction begun if none
    is: what is staged must have a commit to wait for)."""
    sync = session.sync_session
    if not isinstance(sync, StagingSession):
        raise TypeError("a session of shared.db.create_session_factory stages for its commit")
    transaction = sync.get_transaction() or sync.begin()
    found: Staged | None = sync.info.get(STAGED)
    if found is None or found.transaction is not transaction:
        found = sync.info[STAGED] = Staged(transaction)
    return found


_statements: dict[str, TextClause] = {}


def write_outbox(schema: str) -> TextClause:
    """The rows of one outbox, given as arrays (one per column, in order), and the NOTIFYs of
    the transaction: one statement of constant text, prepared once per connection."""
    if schema not in _statements:
        _statements[schema] = text(
            f"WITH written AS (INSERT INTO {schema}.outbox"
            " (shard, topic, key, event_id, event_type, headers, payload)"
            " SELECT shard, topic, key, event_id, event_type, CAST(headers AS jsonb), payload"
            " FROM unnest(CAST(:shards AS smallint[]), CAST(:topics AS text[]),"
            " CAST(:keys AS text[]), CAST(:event_ids AS uuid[]), CAST(:event_types AS text[]),"
            " CAST(:headers AS text[]), CAST(:payloads AS bytea[]))"
            " WITH ORDINALITY AS event(shard, topic, key, event_id, event_type, headers,"
            " payload, position)"
            " ORDER BY position)"
            " SELECT pg_notify(channel, '') FROM unnest(CAST(:channels AS text[])) AS channel"
        )
    return _statements[schema]


@event.listens_for(StagingSession, "before_commit")
def _write_staged(session: Session) -> None:
    found: Staged | None = session.info.pop(STAGED, None)
    if found is None or found.transaction is not session.get_transaction():
        return
    channels = list(found.channels)
    for schema, rows in found.outbox.items():
        session.execute(
            write_outbox(schema),
            {
                "shards": [row["shard"] for row in rows],
                "topics": [row["topic"] for row in rows],
                "keys": [row["key"] for row in rows],
                "event_ids": [row["event_id"] for row in rows],
                "event_types": [row["event_type"] for row in rows],
                "headers": [row["headers"] for row in rows],
                "payloads": [row["payload"] for row in rows],
                "channels": channels,
            },
        )
        channels = []  # told once
    if channels:
        session.execute(NOTIFY_ALL, {"channels": channels})


@event.listens_for(StagingSession, "after_transaction_end")
def _forget_staged(session: Session, transaction: SessionTransaction) -> None:
    """A rollback drops what the transaction staged."""
    found: Staged | None = session.info.get(STAGED)
    if found is not None and found.transaction is transaction:
        del session.info[STAGED]
