"""The Merkle log in PostgreSQL: appending leaves, reading hashes, proofs and checkpoints.

Appends are serialised by a transaction-scoped advisory lock; the log's size is the number of
leaves, and every complete subtree is stored once, so any root or proof is one indexed read of
at most ~2 log2(n) hashes. Nothing here updates or deletes: the writer role could not.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from sqlalchemy import Row, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.linking import joined_incidents
from services.audit.logged import StoredLeaf
from services.audit.merkle import (
    CompactRange,
    Node,
    ProofError,
    Range,
    consistency_ranges,
    inclusion_ranges,
    nodes_for,
    subtree_hash,
)
from services.audit.models import (
    SCHEMA,
    WRITER_ROLE,
    checkpoints,
    incident_leaves,
    log_entries,
    tree_nodes,
)
from shared.db import driver_of
from shared.driver import fetch
from shared.staging import of_transaction

APPEND_LOCK = zlib.crc32(b"audit:append")
LEAF_COLUMNS = (
    "ce_source",
    "ce_id",
    "ce_type",
    "subject",
    "ce_time",
    "topic",
    "partition",
    "offset",
    "leaf",
    "leaf_hash",
)
CHECKPOINT_LOCK = zlib.crc32(b"audit:checkpoint")
# Appends NOTIFY this channel, so the findings follower need not poll for new leaves.
APPENDED_CHANNEL = "audit_appended"


@dataclass(frozen=True)
class NewLeaf:
    """An event about to become a leaf, with the columns the log keeps beside its bytes."""

    ce_source: str
    ce_id: UUID
    ce_type: str
    subject: str
    ce_time: datetime
    topic: str
    partition: int
    offset: int
    leaf: bytes
    leaf_hash: bytes
    also: tuple[str, ...] = ()  # other incidents whose history holds it (R20: a link names two)


async def act_as_writer(session: AsyncSession) -> None:
    """Run the rest of this transaction as the role that may only INSERT and SELECT."""
    await session.execute(text(f"SET LOCAL ROLE {WRITER_ROLE}"))


# What a transaction that appends consumed events needs before it reads the log: the writer's
# role (set_config is SET LOCAL), the append lock, and the NOTIFY of the leaves it appends, in
# one round trip where they were three. The NOTIFY goes out at commit, so a rolled-back append
# tells nobody; a batch of repeats only, which appends nothing, wakes the findings follower and
# the checkpointer for a look that finds nothing new.
OPEN_APPEND = text(
    "SELECT set_config('role', :role, true), pg_advisory_xact_lock(CAST(:lock AS bigint)),"
    " pg_notify(:channel, '')"
)


@dataclass
class _AppendLock:
    held: bool = field(default=False)


def _append_lock(session: AsyncSession) -> _AppendLock:
    return of_transaction(session, "audit.append_lock", _AppendLock)


async def open_append(session: AsyncSession) -> None:
    """Act as the writer, hold the append lock and tell the log's followers at commit."""
    await fetch(
        session,
        OPEN_APPEND,
        {"role": WRITER_ROLE, "lock": APPEND_LOCK, "channel": APPENDED_CHANNEL},
    )
    _append_lock(session).held = True


async def log_size(session: AsyncSession) -> int:
    last = (await session.execute(select(func.max(log_entries.c.index)))).scalar_one()
    return 0 if last is None else int(last) + 1


# Which of the events are logged already, the log's size and the right border of its tree (the
# hashes an append starts from): one round trip, read under the append lock. The border of a
# tree of size n has a node for each bit set in n, at that level, the (n >> level)-th from the
# left (`merkle.range_nodes`); a leaf's hash is in `log_entries`, a higher node's in
# `tree_nodes`.
LOGGED_AND_BORDER = text(
    "WITH logged AS (SELECT e.ce_source, e.ce_id FROM audit.log_entries e"
    " JOIN unnest(CAST(:sources AS text[]), CAST(:ids AS uuid[])) AS k(source, id)"
    " ON e.ce_source = k.source AND e.ce_id = k.id),"
    " size AS MATERIALIZED (SELECT COALESCE(max(index) + 1, 0) AS n FROM audit.log_entries),"
    " border AS (SELECT level, (size.n >> level) - 1 AS index"
    " FROM size, generate_series(0, 62) AS level WHERE (size.n >> level) & 1 = 1),"
    " hashes AS (SELECT border.level, e.leaf_hash AS hash FROM border"
    " JOIN audit.log_entries e ON border.level = 0 AND e.index = border.index"
    " UNION ALL SELECT border.level, n.hash FROM border"
    " JOIN audit.tree_nodes n ON border.level > 0 AND n.level = border.level"
    " AND n.index = border.index)"
    " SELECT (SELECT json_agg(json_build_array(ce_source, ce_id)) FROM logged) AS logged,"
    " (SELECT n FROM size) AS size,"
    " (SELECT array_agg(level ORDER BY level DESC) FROM hashes) AS levels,"
    " (SELECT array_agg(hash ORDER BY level DESC) FROM hashes) AS hashes"
)


async def append(session: AsyncSession, leaves: Sequence[NewLeaf]) -> list[int]:
    """Append leaves in order; an event (`ce_source`, `ce_id`) already logged is skipped.

    Returns the indices given to the new leaves.
    """
    return list((await append_new(session, leaves)).values())


async def append_new(
    session: AsyncSession, leaves: Sequence[NewLeaf]
) -> dict[tuple[str, UUID], int]:
    """`append`: the events appended (`ce_source`, `ce_id`), each with its leaf's index. The
    log holds an event once, so it is also the audit consumer's record of what it applied."""
    lock = _append_lock(session)
    if not lock.held:
        await session.execute(select(func.pg_advisory_xact_lock(APPEND_LOCK)))
        lock.held = True
    unique: dict[tuple[str, UUID], NewLeaf] = {}
    for leaf in leaves:
        unique.setdefault((leaf.ce_source, leaf.ce_id), leaf)
    if not unique:
        return {}
    sources, ids = zip(*unique, strict=True)
    [found] = await fetch(session, LOGGED_AND_BORDER, {"sources": list(sources), "ids": list(ids)})
    for source, event_id in found.logged or ():  # json: the ids as text
        unique.pop((source, UUID(event_id)), None)
    if not unique:
        return {}
    border = zip(found.levels or (), map(bytes, found.hashes or ()), strict=True)
    try:
        tree = CompactRange.restored(int(found.size), list(border))
    except ProofError as error:
        raise LookupError(f"the log of {found.size} leaves misses a node of its border") from error
    rows, nodes, named = [], [], []
    for leaf in unique.values():
        index = tree.size
        for node, digest in tree.append(leaf.leaf_hash):
            if node.level:
                nodes.append((node.level, node.index, digest))
        rows.append((index, *(getattr(leaf, column) for column in LEAF_COLUMNS)))
        named.extend((incident, index) for incident in leaf.also)
    # COPY: several times faster than a multi-row INSERT, and still only an INSERT to the
    # privileges and triggers.
    driver = await driver_of(await session.connection())
    await driver.copy_records_to_table(
        log_entries.name, schema_name=SCHEMA, columns=["index", *LEAF_COLUMNS], records=rows
    )
    if nodes:
        await driver.copy_records_to_table(
            tree_nodes.name, schema_name=SCHEMA, columns=["level", "index", "hash"], records=nodes
        )
    if named:
        await driver.copy_records_to_table(
            incident_leaves.name,
            schema_name=SCHEMA,
            columns=["incident_id", "index"],
            records=named,
        )
    return {event: row[0] for event, row in zip(unique, rows, strict=True)}


# An incident's leaves: those published under it and those filed under it too (R20).
HISTORIES = text(
    "SELECT subject AS incident, index, leaf FROM audit.log_entries "
    "WHERE subject = ANY(CAST(:subjects AS text[])) AND index < :end "
    "UNION ALL "
    "SELECT n.incident_id AS incident, e.index, e.leaf FROM audit.incident_leaves n "
    "JOIN audit.log_entries e ON e.index = n.index "
    "WHERE n.incident_id = ANY(CAST(:subjects AS text[])) AND n.index < :end "
    "ORDER BY index"
)
# Incidents joined to one another through other incidents are read this many hops deep.
EVENT_HOPS = 8


async def histories(
    session: AsyncSession, incidents: Iterable[str], end: int
) -> dict[str, list[StoredLeaf]]:
    """Every leaf below `end` of each incident, in one indexed read, in log order."""
    wanted = sorted(set(incidents))
    found: dict[str, list[StoredLeaf]] = {incident: [] for incident in wanted}
    if not wanted:
        return found
    rows = await session.execute(HISTORIES, {"subjects": wanted, "end": end})
    for row in rows:
        found[row.incident].append((row.index, bytes(row.leaf)))
    return found


async def event_histories(
    session: AsyncSession, incidents: Iterable[str], end: int
) -> dict[str, list[StoredLeaf]]:
    """The histories of the incidents and of every incident joined to them by links and merges
    standing below `end` (R20), read hop by hop."""
    found = await histories(session, incidents, end)
    for _ in range(EVENT_HOPS):
        joined = set().union(*(joined_incidents(history) for history in found.values()))
        missing = joined - found.keys()
        if not missing:
            break
        found.update(await histories(session, missing, end))
    return found


NODE_HASHES = text(
    "SELECT 0 AS level, e.index, e.leaf_hash AS hash FROM audit.log_entries e "
    "WHERE e.index = ANY(CAST(:leaves AS bigint[])) "
    "UNION ALL "
    "SELECT n.level, n.index, n.hash FROM audit.tree_nodes n "
    "JOIN unnest(CAST(:levels AS smallint[]), CAST(:indices AS bigint[])) AS k(level, index) "
    "ON n.level = k.level AND n.index = k.index"
)


async def node_hashes(session: AsyncSession, nodes: Iterable[Node]) -> dict[Node, bytes]:
    """Hashes of complete nodes in one statement of constant text: leaves from `log_entries`,
    the rest from `tree_nodes`. A node the log does not have (yet) raises LookupError."""
    wanted = set(nodes)
    if not wanted:
        return {}
    inner = [node for node in wanted if node.level > 0]
    rows = await session.execute(
        NODE_HASHES,
        {
            "leaves": [node.index for node in wanted if node.level == 0],
            "levels": [node.level for node in inner],
            "indices": [node.index for node in inner],
        },
    )
    found = {Node(row.level, row.index): bytes(row.hash) for row in rows}
    missing = wanted - found.keys()
    if missing:
        raise LookupError(f"the log is smaller than the tree asked for (no node {min(missing)})")
    return found


async def range_hashes(session: AsyncSession, ranges: Sequence[Range]) -> list[bytes]:
    known = await node_hashes(session, nodes_for(ranges))
    return [subtree_hash(start, end, known.__getitem__) for start, end in ranges]


async def root_at(session: AsyncSession, size: int) -> bytes:
    (root,) = await range_hashes(session, [(0, size)])
    return root


async def inclusion_proofs(
    session: AsyncSession, indices: Iterable[int], size: int
) -> dict[int, list[bytes]]:
    """Inclusion proofs of several leaves in the tree of `size`, in one read."""
    paths = {index: inclusion_ranges(index, size) for index in indices}
    hashes = iter(await range_hashes(session, [r for path in paths.values() for r in path]))
    return {index: [next(hashes) for _ in path] for index, path in paths.items()}


@dataclass(frozen=True)
class InclusionBundle:
    leaf_hash: bytes
    proof: list[bytes]
    root: bytes


async def inclusion_bundle(session: AsyncSession, index: int, size: int) -> InclusionBundle:
    """What a client needs to check leaf `index` in the tree of `size`, in one read.

    ProofError for an index outside the tree, LookupError for a tree larger than the log.
    """
    ranges = [(index, index + 1), (0, size), *inclusion_ranges(index, size)]
    leaf, root, *proof = await range_hashes(session, ranges)
    return InclusionBundle(leaf, proof, root)


@dataclass(frozen=True)
class ConsistencyBundle:
    old_root: bytes
    new_root: bytes
    proof: list[bytes]


async def consistency_bundle(
    session: AsyncSession, old_size: int, new_size: int
) -> ConsistencyBundle:
    """Both roots and the proof that the tree of `new_size` extends that of `old_size`."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from {old_size} to {new_size}")
    steps = consistency_ranges(old_size, new_size) if old_size < new_size else []
    old_root, new_root, *proof = await range_hashes(session, [(0, old_size), (0, new_size), *steps])
    return ConsistencyBundle(old_root, new_root, proof)


async def entries(session: AsyncSession, indices: Iterable[int]) -> list[Row]:
    return list(
        (
            await session.execute(
                select(log_entries)
                .where(log_entries.c.index.in_(list(indices)))
                .order_by(log_entries.c.index)
            )
        ).all()
    )


async def latest_checkpoint(session: AsyncSession) -> Row | None:
    return (
        await session.execute(select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1))
    ).first()


async def checkpoint_of_size(session: AsyncSession, size: int) -> Row | None:
    return (await session.execute(select(checkpoints).where(checkpoints.c.size == size))).first()
