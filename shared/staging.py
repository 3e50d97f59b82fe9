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

The hot paths (a consumer's batch, a dispatcher's pass) write what their transaction staged
with `write_staged` before they commit, each statement straight to the driver
(`shared.driver`); whatever is left staged at a commit is written then, through SQLAlchemy.
A consumer's batch claims its events in the inbox with the last of those statements
(`claim_at_commit`), and a transaction that sent nothing else is its one statement alone. Rows
a handler carries (`carry`: the rows of its inserts that nothing in the transaction reads
before its end) ride that statement too, as WITH queries of their own.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import TextClause, event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from shared.driver import fetch

log = logging.getLogger(__name__)

# session.info: the current transaction and what it keeps by name (`of_transaction`).
TRANSACTION_STATE = "transaction_state"
STAGED = "staged_at_commit"
# What the transaction keeps for its end (`when_ended`), and whether it committed.
WHEN_ENDED = "when_ended"
COMMITTED = "committed"

NOTIFY_ALL = text("SELECT pg_notify(channel, '') FROM unnest(CAST(:channels AS text[])) AS channel")

State = TypeVar("State")
# The one statement, and its parameters, that writes the rows deferred under one name.
DeferredWrite = Callable[[list[dict[str, Any]]], tuple[TextClause, dict[str, Any]]]
# The WITH queries, and their parameters, that write the rows carried under one name (`carry`).
CarriedWrite = Callable[[list[dict[str, Any]]], tuple[str, dict[str, Any]]]
# What is told the rows that statement returned, once it ran.
Written = Callable[[Sequence[Any]], None]
# What is told, once the transaction ended, whether it committed.
Ended = Callable[[bool], None]


class StagingSession(Session):
    """The services' session: writes what its transaction staged when it commits."""


@dataclass
class Staged:
    # schema → its outbox rows (`shared.messaging.outbox_values`), in the order they were added
    outbox: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    channels: dict[str, None] = field(default_factory=dict)
    # name → how its rows are written, the rows in the order they were deferred, and who is
    # told what the statement returned
    deferred: dict[str, tuple[DeferredWrite, list[dict[str, Any]], Written | None]] = field(
        default_factory=dict
    )
    # name → how its rows are written as WITH queries of the last staged statement, and the
    # rows in the order they were carried (`carry`)
    carried: dict[str, tuple[CarriedWrite, list[dict[str, Any]]]] = field(default_factory=dict)
    # An INSERT and its parameters, written by the last of the staged statements
    # (`claim_at_commit`)
    claim: tuple[str, dict[str, Any]] | None = None

    def add_rows(self, schema: str, rows: list[dict[str, Any]]) -> None:
        self.outbox.setdefault(schema, []).extend(rows)

    def notify(self, channel: str) -> None:
        self.channels[channel] = None


def of_transaction(session: AsyncSession, name: str, new: Callable[[], State]) -> State:
    """What the session's current transaction keeps under `name` (made by `new` the first
    time), forgotten when the transaction ends; the transaction is begun if none is."""
    sync = session.sync_session
    if not isinstance(sync, StagingSession):
        raise TypeError("a session of shared.db.create_session_factory keeps transaction state")
    transaction = sync.get_transaction() or sync.begin()
    state: tuple[SessionTransaction, dict[str, Any]] | None = sync.info.get(TRANSACTION_STATE)
    if state is None or state[0] is not transaction:
        state = sync.info[TRANSACTION_STATE] = (transaction, {})
    if name not in state[1]:
        state[1][name] = new()
    kept: State = state[1][name]
    return kept


def staged(session: AsyncSession) -> Staged:
    """What the session's transaction stages for its commit."""
    return of_transaction(session, STAGED, Staged)


def defer(
    session: AsyncSession,
    name: str,
    write: DeferredWrite,
    row: dict[str, Any],
    written: Written | None = None,
) -> None:
    """Add `row` to what the transaction writes under `name` with `write`, before its commit;
    `written`, if given, is told the rows the statement returns (the same for every row of a
    name: the first one given is kept)."""
    staged(session).deferred.setdefault(name, (write, [], written))[1].append(row)


def carry(session: AsyncSession, name: str, write: CarriedWrite, row: dict[str, Any]) -> None:
    """Add `row` to what the transaction writes under `name` with `write`: data-modifying WITH
    queries (`name AS (INSERT ...)`, separated by commas; of constant text, their parameters and
    names apart from every other statement's) that ride the last statement writing what the
    transaction staged, as its claim does (`claim_at_commit`): no round trip of their own, and a
    batch that writes nothing else is that one statement. Whatever fails them fails it, and the
    transaction. A statement about to read their rows writes them first (`write_deferred`)."""
    staged(session).carried.setdefault(name, (write, []))[1].append(row)


def when_ended(session: AsyncSession, ended: Ended) -> None:
    """Tell `ended` whether the session's current transaction committed, once it has ended: for
    what the process does after a commit (and undoes after a rollback) that the database does
    not. Told in the order given; one that raises is logged and does not stop the others."""
    of_transaction(session, WHEN_ENDED, list[Ended]).append(ended)


def claim_at_commit(session: AsyncSession, insert: str, parameters: dict[str, Any]) -> None:
    """Have the last statement that writes what the transaction staged also run `insert` (an
    INSERT of constant text, its parameters named apart from the statements'): a consumer's
    claim of its batch in the inbox, made last, costs no round trip of its own. A row it cannot
    insert (an event applied before) fails that statement, and with it the transaction. With
    nothing else staged, or a last statement that cannot carry it, it is a statement of its
    own."""
    staged(session).claim = (insert, parameters)


async def write_deferred(session: AsyncSession, name: str) -> None:
    """Write now the rows deferred or carried under `name`: a statement about to read them must
    see them."""
    kept = staged(session)
    found = kept.deferred.pop(name, None)
    if found is not None:
        write, rows, written = found
        returned = await fetch(session, *write(rows))
        if written is not None:
            written(returned)
    carried = kept.carried.pop(name, None)
    if carried is not None:
        carry_write, carried_rows = carried
        queries, parameters = carry_write(carried_rows)
        await fetch(session, _constant(f"WITH {queries} SELECT"), parameters)


async def write_staged(session: AsyncSession) -> None:
    """Write now what the transaction staged for its commit (the same statements the commit
    would send), each straight to the driver; the transaction is to commit next, nothing sent
    in between. A transaction that sent nothing before and stages one statement (a consumer's
    batch whose handlers only deferred their writes, its claim carried by them) is that
    statement alone, without `BEGIN` and `COMMIT` (`shared.driver.fetch`)."""
    statements = _statements_of(_take_staged(session.sync_session))
    alone = len(statements) == 1
    for statement, parameters, written in statements:
        returned = await fetch(session, statement, parameters, alone=alone)
        if written is not None:
            written(returned)


def columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Rows as one array per column, for a statement that `unnest`s them."""
    return {name: [row[name] for row in rows] for name in rows[0]}


_statements: dict[str, TextClause] = {}


def insert_outbox_rows(schema: str) -> str:
    """SQL that writes outbox rows given as arrays (`columns` of `outbox_values` rows), in the
    order given: for a statement that writes them with what it changes."""
    return (
        f"INSERT INTO {schema}.outbox"
        " (shard, topic, key, event_id, event_type, headers, payload)"
        " SELECT shard, topic, key, event_id, event_type, CAST(headers AS jsonb), payload"
        " FROM unnest(CAST(:shard AS smallint[]), CAST(:topic AS text[]),"
        " CAST(:event_key AS text[]), CAST(:event_id AS uuid[]),"
        " CAST(:event_type AS text[]), CAST(:headers AS text[]), CAST(:payload AS bytea[]))"
        " WITH ORDINALITY AS event(shard, topic, key, event_id, event_type, headers,"
        " payload, position)"
        " ORDER BY position"
    )


def write_outbox(schema: str) -> TextClause:
    """The rows of one outbox, given as arrays (one per column, in order), and the NOTIFYs of
    the transaction: one statement of constant text, prepared once per connection."""
    if schema not in _statements:
        _statements[schema] = text(
            f"WITH written AS ({insert_outbox_rows(schema)})"
            " SELECT pg_notify(channel, '') FROM unnest(CAST(:channels AS text[])) AS channel"
        )
    return _statements[schema]


@event.listens_for(StagingSession, "before_commit")
def _write_staged(session: Session) -> None:
    for statement, parameters, written in _statements_of(_take_staged(session)):
        result = session.execute(statement, parameters)
        if written is not None:
            written(result.all())


def _take_staged(session: Session) -> Staged | None:
    """What the session's current transaction staged, taken: written once, whoever writes it."""
    state: tuple[SessionTransaction, dict[str, Any]] | None = session.info.get(TRANSACTION_STATE)
    if state is None or state[0] is not session.get_transaction():
        return None
    taken: Staged | None = state[1].pop(STAGED, None)
    return taken


def _statements_of(
    found: Staged | None,
) -> list[tuple[TextClause, dict[str, Any], Written | None]]:
    """The statements that write what a transaction staged, each with who is told what it
    returned: the deferred rows first, then the outbox rows with the NOTIFYs (a statement of
    their own when no event was staged); the last of them carries the carried rows and the
    claim, if any (a statement of their own when nothing else is staged)."""
    if found is None:
        return []
    statements = [(*write(rows), written) for write, rows, written in found.deferred.values()]
    channels = list(found.channels)
    for schema, rows in found.outbox.items():
        statements.append((write_outbox(schema), {**columns(rows), "channels": channels}, None))
        channels = []  # told once
    if channels:
        statements.append((NOTIFY_ALL, {"channels": channels}, None))
    queries: list[str] = []
    carried_parameters: dict[str, Any] = {}
    for write_queries, rows in found.carried.values():
        written_queries, parameters = write_queries(rows)
        queries.append(written_queries)
        carried_parameters.update(parameters)
    if found.claim is not None:
        insert, parameters = found.claim
        queries.append(f"{CARRIED} AS ({insert})")
        carried_parameters.update(parameters)
    if queries:
        carrier = _carrying(statements[-1][0].text, ", ".join(queries)) if statements else None
        if carrier is not None:
            _, last_parameters, written = statements.pop()
            statements.append((carrier, {**last_parameters, **carried_parameters}, written))
        elif found.carried:
            statements.append(
                (_constant(f"WITH {', '.join(queries)} SELECT"), carried_parameters, None)
            )
        else:  # the claim alone
            assert found.claim is not None
            statements.append((_constant(found.claim[0]), carried_parameters, None))
    return statements


# A statement that may take another data-modifying one as its first WITH query: a plain
# SELECT, INSERT, UPDATE or DELETE, or one whose WITH list it joins (not a RECURSIVE one).
_PLAIN = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_WITH = re.compile(r"\s*WITH\s+(?!RECURSIVE\b)", re.IGNORECASE)
CARRIED = "carried"


@functools.cache
def _constant(sql: str) -> TextClause:
    """The statement of constant text `sql`, built once: a batch's claim is the same text each
    time, and `text()` parses its parameters anew each time it is built."""
    return text(sql)


@functools.cache
def _carrying(statement: str, queries: str) -> TextClause | None:
    """`statement` running `queries` too (data-modifying WITH queries, separated by commas) as
    WITH queries it does not read (PostgreSQL runs every data-modifying WITH query to
    completion, read or not); None when it cannot. Of constant text for constant statements,
    so built and prepared once like them."""
    if (with_list := _WITH.match(statement)) is not None:
        return text(f"WITH {queries}, {statement[with_list.end() :]}")
    if _PLAIN.match(statement) is not None:
        return text(f"WITH {queries} {statement}")
    return None


@event.listens_for(StagingSession, "after_commit")
def _note_commit(session: Session) -> None:
    state: tuple[SessionTransaction, dict[str, Any]] | None = session.info.get(TRANSACTION_STATE)
    if state is not None:
        state[1][COMMITTED] = True


@event.listens_for(StagingSession, "after_transaction_end")
def _forget_transaction_state(session: Session, transaction: SessionTransaction) -> None:
    """A transaction's state ends with it (a rollback drops what it staged), and what waited
    for its end (`when_ended`) is told whether it committed."""
    state: tuple[SessionTransaction, dict[str, Any]] | None = session.info.get(TRANSACTION_STATE)
    if state is None or state[0] is not transaction:
        return
    del session.info[TRANSACTION_STATE]
    committed = bool(state[1].get(COMMITTED))
    for ended in state[1].get(WHEN_ENDED, ()):
        try:
            ended(committed)
        except Exception:
            log.exception("after the transaction ended (committed: %s)", committed)
