"""The witness command against a log that forks: it cosigns growth and refuses the fork."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from services.audit.merkle import CompactRange, Node, consistency_ranges, hash_leaf, subtree_hash
from services.audit.note import COSIGNATURE_V1, Checkpoint, Signer, open_checkpoint
from tests.audit.test_log import run_witness
from tests.support import serving
from tools.localinfra import free_port

LOG = Signer.from_seed("fork.example/log", bytes(range(1, 33)))


@dataclass
class FakeLog:
    """A log whose operator can show any tree it likes, signed with its real key."""

    port: int
    leaves: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def nodes(self) -> dict[Node, bytes]:
        tree, nodes = CompactRange(), {}
        for leaf in self.leaves:
            nodes.update(tree.append(hash_leaf(leaf)))
        return nodes

    async def checkpoint(self, request: Request) -> Response:
        size = int(request.query_params.get("size", len(self.leaves)))
        if size > len(self.leaves):
            return PlainTextResponse("no such checkpoint", status_code=404)
        root = subtree_hash(0, size, self.nodes().__getitem__)
        return PlainTextResponse(LOG.sign(Checkpoint(LOG.name, size, root).text()))

    async def consistency(self, request: Request) -> Response:
        old, new = int(request.query_params["from"]), int(request.query_params["to"])
        nodes = self.nodes()
        proof = [subtree_hash(s, e, nodes.__getitem__) for s, e in consistency_ranges(old, new)]
        return JSONResponse({"proof": [base64.b64encode(step).decode() for step in proof]})


@contextlib.asynccontextmanager
async def fake_log() -> AsyncIterator[FakeLog]:
    log = FakeLog(free_port())
    app = Starlette(
        routes=[
            Route("/v1/log/checkpoint", log.checkpoint),
            Route("/v1/log/proof/consistency", log.consistency),
        ]
    )
    async with serving(app, log.port):
        yield log


async def test_witness_cosigns_growth_and_refuses_a_forked_log(tmp_path: Path) -> None:
    code, vkey, _ = await run_witness("init", "--state", str(tmp_path), "--name", "w.example/1")
    assert code == 0 and vkey.startswith("w.example/1+")
    cosign = ["cosign", "--state", str(tmp_path), "--log-key", LOG.verifier.vkey]
    async with fake_log() as log:
        log.leaves = [f"事件{n}".encode() for n in range(5)]
        # The first cosignature waits for the operator to name the checkpoint they checked.
        code, out, err = await run_witness(*cosign, "--log", log.url)
        assert code == 3 and "cosigned nothing yet" in err, err
        code, out, err = await run_witness(*cosign, "--log", log.url, "--first-size", "6")
        assert code == 3 and "no checkpoint of size 6" in err, err
        code, out, err = await run_witness(*cosign, "--log", log.url, "--first-size", "4")
        assert code == 0, err
        assert open_checkpoint(out, LOG.verifier)[0].size == 4
        code, out, err = await run_witness(*cosign, "--log", log.url)  # then grows from there
        assert code == 0, err
        assert open_checkpoint(out, LOG.verifier)[0].size == 5
        log.leaves += [f"事件{n}".encode() for n in range(5, 9)]
        code, out, err = await run_witness(*cosign, "--log", log.url)
        assert code == 0, err
        cosigned, _ = open_checkpoint(out, LOG.verifier)
        assert cosigned.size == 9

        # The operator rewrites leaf 2 and grows the tree: a fork, signed with the real key.
        honest = list(log.leaves)
        log.leaves = [*honest[:2], "事件2（改）".encode(), *honest[3:], b"later"]
        code, out, err = await run_witness(*cosign, "--log", log.url)
        assert code == 3, out
        assert "refusing to cosign" in err and "not an extension of the cosigned size 9" in err
        assert list(tmp_path.glob("refused-*.txt"))

        log.leaves = honest[:7]  # a smaller tree: a rollback
        code, _, err = await run_witness(*cosign, "--log", log.url)
        assert code == 3 and "shrank from 9 to 7" in err

        log.leaves = [*honest[:8], b"other"]  # the same size with another root
        code, _, err = await run_witness(*cosign, "--log", log.url)
        assert code == 3 and "refusing to cosign" in err

        log.leaves = [*honest, b"later"]  # the honest log grows on: cosigned again
        code, out, err = await run_witness(*cosign, "--log", log.url)
        assert code == 0, err
    last = (tmp_path / "last-checkpoint.txt").read_text(encoding="utf-8")
    assert open_checkpoint(last, LOG.verifier)[0].size == 10
    assert Signer.parse((tmp_path / "witness.key").read_text()).key_type == COSIGNATURE_V1
