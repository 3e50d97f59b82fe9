"""A witness: cosigns the log's checkpoints only as long as the log only ever grows.

    sqjz-witness init --state DIR --name witness.example/w1
    sqjz-witness cosign --state DIR --log URL --log-key VKEY [--submit]
                                            [--first-size N]

The witness keeps its own Ed25519 key (tlog-cosignature v1, type 0x04) and the last checkpoint
it cosigned. Its first cosignature is not given on trust: the operator checks the log (e.g. with
`services.audit.verify`) and names the size of the checkpoint to cosign first (`--first-size`);
without it, or when the log signed no checkpoint of that size, the witness refuses.
Before cosigning a new one it checks the log's signature and a consistency proof
from that last checkpoint; a smaller tree, the same size with another root, or a proof that
does not hold is a fork: it refuses, keeps both checkpoints as evidence and exits with 3.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.audit.checkpoints import write_private_file
from services.audit.merkle import ProofError, verify_consistency
from services.audit.note import (
    COSIGNATURE_V1,
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    cosign,
    open_checkpoint,
)

KEY_FILE = "witness.key"
LAST_FILE = "last-checkpoint.txt"
REFUSED = 3


class Refusal(Exception):
    """The log showed a checkpoint that does not extend the last one the witness cosigned."""


def check_growth(previous: Checkpoint | None, current: Checkpoint, proof: list[bytes]) -> None:
    if previous is None:
        return  # trust on first use: the first checkpoint seen starts the witness's view
    if current.origin != previous.origin:
        raise Refusal(f"checkpoint of {current.origin}, the witness follows {previous.origin}")
    if previous.size == 0:
        return
    if current.size < previous.size:
        raise Refusal(f"the log shrank from {previous.size} to {current.size} leaves")
    try:
        verify_consistency(
            previous.size, current.size, proof, previous.root_hash, current.root_hash
        )
    except ProofError as error:
        raise Refusal(
            f"size {current.size} is not an extension of the cosigned size {previous.size}: {error}"
        ) from error


@dataclass(frozen=True)
class WitnessState:
    folder: Path

    def signer(self) -> Signer:
        return Signer.parse((self.folder / KEY_FILE).read_text(encoding="utf-8"))

    def last(self, log_key: Verifier) -> Checkpoint | None:
        path = self.folder / LAST_FILE
        if not path.exists():
            return None
        checkpoint, _ = open_checkpoint(path.read_text(encoding="utf-8"), log_key)
        return checkpoint

    def remember(self, note: Note) -> None:
        path = self.folder / LAST_FILE
        scratch = path.with_suffix(".tmp")
        scratch.write_text(note.render(), encoding="utf-8")
        scratch.replace(path)  # atomic: a crash leaves the old or the new, never half

    def keep_evidence(self, previous_note: str, shown: str) -> Path:
        path = self.folder / f"refused-{int(time.time())}.txt"
        path.write_text(f"# last cosigned\n{previous_note}\n# refused\n{shown}", encoding="utf-8")
        return path


def witness_once(
    state: WitnessState,
    client: httpx.Client,
    log_key: Verifier,
    submit: bool,
    first_size: int | None = None,
) -> Note:
    """Fetch, check and cosign the log's latest checkpoint, or for a witness that has cosigned
    nothing yet the one of `first_size` the operator confirmed; the cosigned note."""
    previous = state.last(log_key)
    if previous is None and first_size is None:
        raise Refusal(
            "this witness has cosigned nothing yet: check the log, then name the size of the "
            "first checkpoint to cosign (--first-size)"
        )
    params = {"size": first_size} if previous is None else {}
    shown = client.get("/v1/log/checkpoint", params=params)
    if previous is None and shown.status_code == 404:
        raise Refusal(f"the log signed no checkpoint of size {first_size}")
    shown.raise_for_status()
    current, note = open_checkpoint(shown.text, log_key)
    if previous is None and current.size != first_size:
        raise Refusal(f"asked for the checkpoint of size {first_size}, shown {current.size}")
    proof: list[bytes] = []
    if previous is not None and 0 < previous.size < current.size:
        response = client.get(
            "/v1/log/proof/consistency", params={"from": previous.size, "to": current.size}
        )
        response.raise_for_status()
        proof = [base64.b64decode(step) for step in response.json()["proof"]]
    try:
        check_growth(previous, current, proof)
    except Refusal:
        state.keep_evidence((state.folder / LAST_FILE).read_text(encoding="utf-8"), shown.text)
        raise
    signer = state.signer()
    cosigned = Note(note.text, note.signatures).with_signature(
        cosign(signer, note.text, int(time.time()))
    )
    state.remember(cosigned)
    if submit:
        client.post(
            "/v1/log/cosignatures",
            content=cosigned.render().encode(),
            headers={"content-type": "text/plain; charset=utf-8"},
        ).raise_for_status()
    return cosigned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sqjz-witness", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="create the witness's key; print its verifier key")
    init.add_argument("--state", type=Path, required=True)
    init.add_argument("--name", required=True, help="the witness's name, e.g. witness.example/w1")
    run = commands.add_parser("cosign", help="check and cosign the log's latest checkpoint")
    run.add_argument("--state", type=Path, required=True)
    run.add_argument("--log", required=True, help="the audit service's base URL")
    run.add_argument("--log-key", required=True, help="the log's verifier key")
    run.add_argument("--submit", action="store_true", help="send the cosignature to the log")
    run.add_argument(
        "--first-size",
        type=int,
        help="a witness that has cosigned nothing yet: the size of the checkpoint to cosign "
        "first, confirmed by the operator who checked the log",
    )
    arguments = parser.parse_args(argv)
    state = WitnessState(arguments.state)
    if arguments.command == "init":
        arguments.state.mkdir(parents=True, exist_ok=True)
        if (arguments.state / KEY_FILE).exists():
            print(state.signer().verifier.vkey)
            return 0
        signer = Signer.generate(arguments.name, COSIGNATURE_V1)
        write_private_file(arguments.state / KEY_FILE, signer.skey + "\n")
        print(signer.verifier.vkey)
        return 0
    try:
        with httpx.Client(base_url=arguments.log, timeout=10) as client:
            cosigned = witness_once(
                state,
                client,
                Verifier.parse(arguments.log_key),
                arguments.submit,
                arguments.first_size,
            )
    except Refusal as refusal:
        print(f"refusing to cosign: {refusal}", file=sys.stderr)
        return REFUSED
    except (NoteError, httpx.HTTPError) as error:
        print(f"cannot witness: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(cosigned.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
