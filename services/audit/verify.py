"""The offline verifier: check the log against a signed checkpoint, with no help from the service.

    sqjz-verify log         --checkpoint CP --key VKEY [--witness-key W]
                                                (--database-url URL | --export FILE)
    sqjz-verify inclusion   --checkpoint CP --key VKEY
                                                (--index N | --event-id ID)
                                                (--database-url URL | --export FILE)
    sqjz-verify consistency --old CP1 --new CP2 --key VKEY
                                                (--database-url URL | --export FILE)
    sqjz-verify export      --database-url URL --out FILE

A checkpoint is a file holding the signed note (`GET /v1/log/checkpoint`); keys are vkeys. The
log is read from the database (the audit schema) or from an export (`GET /v1/log/export` or
the `export` command): JSON lines, each a signed checkpoint or a leaf with its stored hash (the
route's pages, concatenated; a line naming the next page is skipped). A leaf exported without
its bytes (personal data in clear, read without pii:read) counts by its stored hash: the tree is
checked, those bytes cannot be, and `log` says how many.
`log` re-derives the whole tree and names the first leaf that no longer matches. Exit status:
0 verified, 1 not verified, 2 cannot read the input.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.audit.merkle import (
    CompactRange,
    Node,
    ProofError,
    consistency_ranges,
    hash_leaf,
    inclusion_ranges,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from services.audit.note import (
    Checkpoint,
    NoteError,
    Verifier,
    open_checkpoint,
    verify_cosignature,
)
from services.audit.verification import LeafChecker, judge
from shared.settings import to_asyncpg_url

# (index, leaf bytes or None where an export withheld them, stored leaf hash)
Entry = tuple[int, bytes | None, bytes | None]


@dataclass(frozen=True)
class Source:
    """Where the leaves and the log's own checkpoints come from."""

    database_url: str | None = None
    export: Path | None = None

    async def entries(self) -> AsyncIterator[Entry]:
        if self.export is not None:
            with self.export.open(encoding="utf-8") as lines:
                for line in lines:
                    item = json.loads(line)
                    if "index" in item:
                        stored = item.get("leaf_hash")
                        leaf = item.get("leaf")
                        yield (
                            item["index"],
                            base64.b64decode(leaf) if leaf is not None else None,
                            base64.b64decode(stored) if stored else None,
                        )
            return
        connection = await self._connect()
        try:
            async with connection.transaction(readonly=True):
                async for row in connection.cursor(
                    "SELECT index, leaf, leaf_hash FROM audit.log_entries ORDER BY index",
                    prefetch=5000,
                ):
                    yield row["index"], bytes(row["leaf"]), bytes(row["leaf_hash"])
        finally:
            await connection.close()

    async def checkpoint_notes(self) -> list[str]:
        if self.export is not None:
            with self.export.open(encoding="utf-8") as lines:
                return [
                    item["checkpoint"] for item in map(json.loads, lines) if "checkpoint" in item
                ]
        connection = await self._connect()
        try:
            rows = await connection.fetch("SELECT note FROM audit.checkpoints ORDER BY size")
            return [row["note"] for row in rows]
        finally:
            await connection.close()

    async def _connect(self) -> asyncpg.Connection:
        assert self.database_url is not None
        return await asyncpg.connect(
            to_asyncpg_url(self.database_url).replace("postgresql+asyncpg://", "postgresql://")
        )


def read_checkpoint(path: Path, log_key: Verifier, witnesses: list[Verifier]) -> Checkpoint:
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    checkpoint, note = open_checkpoint(text, log_key)
    for witness in witnesses:
        verify_cosignature(note, witness)
    return checkpoint


def trusted_history(notes: list[str], log_key: Verifier) -> list[Checkpoint]:
    """The log's own checkpoints whose signatures verify; others are ignored."""
    history = []
    for note in notes:
        try:
            history.append(open_checkpoint(note, log_key)[0])
        except NoteError:
            continue
    return history


async def verify_log(source: Source, checkpoint: Checkpoint, log_key: Verifier) -> tuple[bool, str]:
    history = trusted_history(await source.checkpoint_notes(), log_key)
    checker = LeafChecker({checkpoint.size, *(c.size for c in history)})
    async for index, leaf, stored in source.entries():
        if not checker.add(index, leaf, stored):
            break
    check = checker.result()
    verdict = judge(check, checkpoint, history)
    lines = [
        f"{'OK' if verdict.ok else 'FAIL'}: {verdict.message}",
        f"log size {check.size}; checkpoint size {checkpoint.size}, root "
        f"{base64.b64encode(checkpoint.root_hash).decode()}",
    ]
    if verdict.first_bad_index is not None:
        lines.append(f"first index that no longer matches: {verdict.first_bad_index}")
    if check.withheld:
        lines.append(
            f"{check.withheld} leaves were exported without their bytes (personal data, read "
            "without pii:read): their stored hashes were checked against the tree, not the bytes"
        )
    if check.size > checkpoint.size:
        lines.append(f"{check.size - checkpoint.size} later leaves are not covered by it")
    lines += list(verdict.details)
    return verdict.ok, "\n".join(lines)


async def leaf_hashes(source: Source, size: int) -> tuple[list[bytes], dict[int, bytes]]:
    hashes: list[bytes] = []
    leaves: dict[int, bytes] = {}
    async for index, leaf, stored in source.entries():
        if index != len(hashes) or index >= size:
            break
        if leaf is None:  # withheld from the export: only its stored hash is known
            if stored is None:
                raise ProofError(f"leaf {index} has neither bytes nor a hash")
            hashes.append(stored)
            continue
        hashes.append(hash_leaf(leaf))
        leaves[index] = leaf
    if len(hashes) < size:
        raise ProofError(f"the log yields {len(hashes)} leaves, the checkpoint needs {size}")
    return hashes, leaves


def proof_from(hashes: list[bytes], ranges: list[tuple[int, int]]) -> list[bytes]:
    """Proof hashes recomputed from the leaves themselves."""
    tree = CompactRange()
    nodes: dict[Node, bytes] = {}
    for digest in hashes:
        nodes.update(tree.append(digest))
    return [subtree_hash(start, end, nodes.__getitem__) for start, end in ranges]


async def verify_one_inclusion(
    source: Source, checkpoint: Checkpoint, index: int | None, event_id: str | None = None
) -> tuple[bool, str]:
    hashes, leaves = await leaf_hashes(source, checkpoint.size)
    if index is None:
        index = next(
            (i for i, leaf in leaves.items() if json.loads(leaf).get("id") == event_id), None
        )
        if index is None:
            raise ProofError(f"no event {event_id} among the {checkpoint.size} leaves")
    proof = proof_from(hashes, inclusion_ranges(index, checkpoint.size))
    verify_inclusion(index, checkpoint.size, hashes[index], proof, checkpoint.root_hash)
    event = json.loads(leaves[index]) if index in leaves else {"type": "(withheld)"}
    return True, (
        f"OK: leaf {index} ({event.get('type')} {event.get('id')}) is in the checkpoint of size "
        f"{checkpoint.size}\nproof: {[base64.b64encode(p).decode() for p in proof]}"
    )


async def verify_two(source: Source, old: Checkpoint, new: Checkpoint) -> tuple[bool, str]:
    if old.size > new.size:
        old, new = new, old
    hashes, _ = await leaf_hashes(source, new.size)
    proof = (
        [] if old.size == new.size else proof_from(hashes, consistency_ranges(old.size, new.size))
    )
    verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    return True, f"OK: the checkpoint of size {new.size} extends the one of size {old.size}"


async def export(database_url: str, out: Path) -> int:
    source = Source(database_url=database_url)
    count = 0
    with out.open("w", encoding="utf-8") as file:
        for note in await source.checkpoint_notes():
            file.write(json.dumps({"checkpoint": note}, ensure_ascii=False) + "\n")
        async for index, leaf, stored in source.entries():
            assert leaf is not None  # the database holds every leaf's bytes
            item = {"index": index, "leaf": base64.b64encode(leaf).decode()}
            if stored is not None:
                item["leaf_hash"] = base64.b64encode(stored).decode()
            file.write(json.dumps(item) + "\n")
            count += 1
    return count


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="sqjz-verify", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    def with_source(command: argparse.ArgumentParser) -> None:
        where = command.add_mutually_exclusive_group(required=True)
        where.add_argument("--database-url")
        where.add_argument("--export", type=Path)
        command.add_argument("--key", required=True, help="the log's verifier key")
        command.add_argument(
            "--witness-key", action="append", default=[], help="require this witness's cosignature"
        )

    log = commands.add_parser("log", help="re-derive the whole log against a checkpoint")
    log.add_argument("--checkpoint", type=Path, required=True)
    with_source(log)
    inclusion = commands.add_parser("inclusion", help="check one leaf against a checkpoint")
    inclusion.add_argument("--checkpoint", type=Path, required=True)
    which = inclusion.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int)
    which.add_argument("--event-id", help="the event's ce_id")
    with_source(inclusion)
    consistency = commands.add_parser("consistency", help="check two checkpoints agree")
    consistency.add_argument("--old", type=Path, required=True)
    consistency.add_argument("--new", type=Path, required=True)
    with_source(consistency)
    dump = commands.add_parser("export", help="write checkpoints and leaves as JSON lines")
    dump.add_argument("--database-url", required=True)
    dump.add_argument("--out", type=Path, required=True)
    return root


async def run(arguments: argparse.Namespace) -> int:
    if arguments.command == "export":
        count = await export(arguments.database_url, arguments.out)
        print(f"exported {count} leaves to {arguments.out}")
        return 0
    log_key = Verifier.parse(arguments.key)
    witnesses = [Verifier.parse(vkey) for vkey in arguments.witness_key]
    source = Source(arguments.database_url, arguments.export)
    try:
        if arguments.command == "log":
            checkpoint = read_checkpoint(arguments.checkpoint, log_key, witnesses)
            ok, message = await verify_log(source, checkpoint, log_key)
        elif arguments.command == "inclusion":
            checkpoint = read_checkpoint(arguments.checkpoint, log_key, witnesses)
            ok, message = await verify_one_inclusion(
                source, checkpoint, arguments.index, arguments.event_id
            )
        else:
            old = read_checkpoint(arguments.old, log_key, witnesses)
            new = read_checkpoint(arguments.new, log_key, witnesses)
            ok, message = await verify_two(source, old, new)
    except (ProofError, NoteError) as error:
        ok, message = False, f"FAIL: {error}"
    print(message)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        return asyncio.run(run(arguments))
    except (OSError, ValueError, asyncpg.PostgresError) as error:
        print(f"cannot verify: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
