"""The incident page's proof check (services/console/static/merkle.js) in Chromium, against
the log's own code: inclusion proofs from services/audit/merkle.py, checkpoints signed as
services/audit/note.py signs them. The page is served from this machine under the console's
strict policy (scripts from the page's own origin only), as the console serves it."""

from __future__ import annotations

import base64
import functools
import html
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.audit.merkle import (
    hash_leaf,
    inclusion_ranges,
    root_from_inclusion,
    root_of,
    verify_inclusion,
)
from services.audit.note import Checkpoint, Signer
from shared.settings import REPOSITORY_ROOT, Settings
from tests.browser.pages import CHROMIUM_ARGS

MERKLE_JS = REPOSITORY_ROOT / "services" / "console" / "static" / "merkle.js"
POLICY = "default-src 'none'; script-src 'self'; style-src 'self'"
ORIGIN = Settings().audit_log_origin
B64 = base64.b64encode


def b64(data: bytes) -> str:
    return B64(data).decode()


# --- a log, built and signed by the project's own code ---------------------------------------


@dataclass
class Log:
    leaves: list[bytes]
    signer: Signer = field(default_factory=lambda: Signer.generate(ORIGIN))

    @functools.cached_property
    def hashes(self) -> list[bytes]:
        return [hash_leaf(leaf) for leaf in self.leaves]

    @property
    def size(self) -> int:
        return len(self.leaves)

    @property
    def root(self) -> bytes:
        return root_of(self.hashes)

    def proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 PATH(index, D[size]): the subtree hashes from the leaf up."""
        size = self.size if size is None else size
        return [root_of(self.hashes[start:end]) for start, end in inclusion_ranges(index, size)]

    def note(self, size: int | None = None, signer: Signer | None = None) -> str:
        size = self.size if size is None else size
        checkpoint = Checkpoint(ORIGIN, size, root_of(self.hashes[:size]))
        return (signer or self.signer).sign(checkpoint.text())


@dataclass
class Row:
    index: int
    leaf_hash: bytes
    proof: list[bytes]
    leaf: bytes | None = None
    covered: bool = True


def rows_of(log: Log, size: int, with_leaves: bool = True) -> list[Row]:
    rows = []
    for index in range(log.size):
        covered = index < size
        proof = log.proof(index, size) if covered else []
        if covered:
            # The proofs are the log's own: Python's verifier takes them.
            verify_inclusion(index, size, log.hashes[index], proof, root_of(log.hashes[:size]))
        leaf = log.leaves[index] if with_leaves and index % 2 == 0 else None
        rows.append(Row(index, log.hashes[index], proof, leaf, covered))
    return rows


def timeline_page(
    note: str, size: int, root: bytes, log_key: str, rows: list[Row], extra: str = ""
) -> str:
    """The timeline section as templates/incident.html renders it."""
    attribute = functools.partial(html.escape, quote=True)
    body = "".join(
        f'<tr class="entry" data-index="{row.index}" data-leaf-hash="{b64(row.leaf_hash)}" '
        f'data-leaf="{b64(row.leaf) if row.leaf is not None else ""}" '
        f'data-proof="{",".join(b64(step) for step in row.proof)}" '
        f'data-covered="{"true" if row.covered else "false"}">'
        f'<td>{row.index}</td><td class="proof-result">待验证</td></tr>'
        for row in rows
    )
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>timeline</title>'
        '<script src="/static/merkle.js" defer></script></head><body>'
        f'<section class="card timeline" data-checkpoint-note="{attribute(note)}" '
        f'data-checkpoint-size="{size}" data-checkpoint-root="{b64(root)}" '
        f'data-log-key="{attribute(log_key)}">'
        '<h2>审计时间线 <span class="muted" id="proof-summary"></span></h2>'
        f"<table><tbody>{body}</tbody></table></section>{extra}</body></html>"
    )


# --- a server for the page, and the browser ---------------------------------------------------


class PageServer:
    """Serves one page at a time at /, and merkle.js as the console serves its static files."""

    def __init__(self) -> None:
        self.page = ""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/static/merkle.js":
                    body, kind = MERKLE_JS.read_bytes(), "text/javascript; charset=utf-8"
                elif self.path == "/":
                    body, kind = server.page.encode(), "text/html; charset=utf-8"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Security-Policy", POLICY)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def _merkle_browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Checked:
    outcomes: list[str]
    texts: list[str]
    summary: str
    page: Any


@pytest.fixture
def check(_merkle_browser: Any) -> Iterator[Any]:
    """Load a page and wait until merkle.js has written its results (a condition, not a pause)."""
    server = PageServer()
    pages: list[Any] = []

    def load(document: str) -> Checked:
        server.page = document
        page = _merkle_browser.new_page()
        pages.append(page)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "console",
            lambda message: errors.append(message.text) if message.type == "error" else None,
        )
        page.goto(server.url)
        page.wait_for_function("document.querySelector('section.timeline').dataset.proofChecked")
        assert not errors, errors
        return read(page)

    try:
        yield load
    finally:
        for page in pages:
            page.close()
        server.close()


def read(page: Any) -> Checked:
    results = page.eval_on_selector_all(
        "tr.entry .proof-result",
        "cells => cells.map(c => [c.className, c.textContent])",
    )
    outcomes = [
        "verified" if "verified" in kind else "failed" if "failed" in kind else "pending"
        for kind, _ in results
    ]
    return Checked(
        outcomes,
        [text for _, text in results],
        page.text_content("#proof-summary") or "",
        page,
    )


# --- the checks --------------------------------------------------------------------------------

LEAVES = [f'{{"index": {i}, "ce_type": "incident.reported"}}'.encode() for i in range(11)]


def test_every_covered_entry_is_verified_against_the_signed_checkpoint(check: Any) -> None:
    log = Log(LEAVES)
    size = 9  # the last two entries came after the checkpoint
    checked = check(
        timeline_page(
            log.note(size),
            size,
            root_of(log.hashes[:size]),
            log.signer.verifier.vkey,
            rows_of(log, size),
        )
    )
    assert checked.outcomes == ["verified"] * 9 + ["pending"] * 2
    assert checked.texts == ["已验证"] * 9 + ["待签入检查点"] * 2
    assert f"签名有效（日志密钥 {log.signer.id:08x}）" in checked.summary
    assert "9 条已验证" in checked.summary and "2 条待签入检查点" in checked.summary


def test_a_leaf_whose_bytes_do_not_match_its_hash_fails_alone(check: Any) -> None:
    log = Log(LEAVES)
    rows = rows_of(log, log.size)
    rows[4].leaf = rows[4].leaf.replace(b"reported", b"forgotten")  # type: ignore[union-attr]
    checked = check(timeline_page(log.note(), log.size, log.root, log.signer.verifier.vkey, rows))
    assert checked.outcomes[4] == "failed" and checked.texts[4] == "验证失败"
    assert checked.outcomes[:4] + checked.outcomes[5:] == ["verified"] * (log.size - 1)
    assert "1 条验证失败" in checked.summary


def test_a_leaf_hash_or_a_proof_step_that_was_changed_fails(check: Any) -> None:
    log = Log(LEAVES)
    rows = rows_of(log, log.size, with_leaves=False)
    rows[3].leaf_hash = hash_leaf(b"another event")
    rows[6].proof[1] = bytes(32)
    rows[7].index = 8  # a proof shown under another entry's position
    checked = check(timeline_page(log.note(), log.size, log.root, log.signer.verifier.vkey, rows))
    failed = {i for i, outcome in enumerate(checked.outcomes) if outcome == "failed"}
    assert failed == {3, 6, 7}


def test_a_tampered_signature_fails_every_entry(check: Any) -> None:
    log = Log(LEAVES)
    note = log.note()
    text, _, line = note.rstrip("\n").rpartition("\n")
    name, encoded = line.rsplit(" ", 1)
    signature = bytearray(base64.b64decode(encoded))
    signature[10] ^= 0x01
    forged = f"{text}\n{name} {b64(bytes(signature))}\n"
    checked = check(
        timeline_page(forged, log.size, log.root, log.signer.verifier.vkey, rows_of(log, log.size))
    )
    assert checked.outcomes == ["failed"] * log.size
    assert "检查点签名无效" in checked.summary


def test_a_checkpoint_signed_by_another_key_or_naming_other_numbers_fails(check: Any) -> None:
    log = Log(LEAVES)
    impostor = Signer.generate(ORIGIN)  # the log's name, not its key
    checked = check(
        timeline_page(
            log.note(signer=impostor),
            log.size,
            log.root,
            log.signer.verifier.vkey,
            rows_of(log, log.size),
        )
    )
    assert checked.outcomes == ["failed"] * log.size
    assert "没有日志密钥的签名" in checked.summary
    # The signed note is what counts: a page showing another root or size is refused.
    checked = check(
        timeline_page(
            log.note(), log.size, bytes(32), log.signer.verifier.vkey, rows_of(log, log.size)
        )
    )
    assert checked.outcomes == ["failed"] * log.size


def test_a_log_key_with_plus_signs_in_its_base64_is_read_whole(check: Any) -> None:
    """`<name>+<id>+<base64>`: only the first two `+` separate."""
    signer = Signer.generate(ORIGIN)
    while "+" not in signer.verifier.vkey.split("+", 2)[2]:
        signer = Signer.generate(ORIGIN)
    log = Log(LEAVES[:3], signer)
    checked = check(
        timeline_page(log.note(), log.size, log.root, signer.verifier.vkey, rows_of(log, 3))
    )
    assert checked.outcomes == ["verified"] * 3


def test_the_arithmetic_holds_past_32_bits(check: Any) -> None:
    """Sizes of a log that has run for years: no 32-bit shifts in the walk up the tree."""
    index, size = 3_000_000_123, 5_000_000_017
    leaf_hash = hash_leaf(b"a leaf far down the log")
    depth = len(inclusion_ranges(index, size))
    proof = [bytes([step]) * 32 for step in range(1, depth + 1)]
    root = root_from_inclusion(index, size, leaf_hash, proof)
    signer = Signer.generate(ORIGIN)
    note = signer.sign(Checkpoint(ORIGIN, size, root).text())
    rows = [Row(index, leaf_hash, proof), Row(index - 1, leaf_hash, proof)]
    checked = check(timeline_page(note, size, root, signer.verifier.vkey, rows))
    assert checked.outcomes == ["verified", "failed"]


def test_the_check_runs_again_after_a_live_refresh(check: Any) -> None:
    log = Log(LEAVES)
    checked = check(
        timeline_page(
            log.note(5), 5, root_of(log.hashes[:5]), log.signer.verifier.vkey, rows_of(log, 5)
        )
    )
    assert checked.outcomes == ["verified"] * 5 + ["pending"] * (log.size - 5)
    page = checked.page
    first = page.eval_on_selector("section.timeline", "s => s.dataset.proofChecked")
    # The refreshed region now shows entry 2 with another entry's hash.
    page.eval_on_selector(
        "tr.entry[data-index='2']",
        "(row, hash) => { row.dataset.leafHash = hash; row.dataset.leaf = ''; }",
        b64(log.hashes[1]),
    )
    page.evaluate("document.dispatchEvent(new CustomEvent('console:refreshed'))")
    page.wait_for_function(
        "first => document.querySelector('section.timeline').dataset.proofChecked !== first",
        arg=first,
    )
    assert read(page).outcomes[:5] == ["verified", "verified", "failed", "verified", "verified"]
