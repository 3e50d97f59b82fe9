"""Signed notes, checkpoints and cosignatures (services/audit/note.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.audit.merkle import EMPTY_ROOT
from services.audit.note import (
    COSIGNATURE_V1,
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    cosign,
    open_checkpoint,
    open_note,
    verify_cosignature,
)

KAT = json.loads(
    (
        Path(__file__).resolve().parents[1] / "vectors" / "signed-note" / "go-sumdb-note-kat.json"
    ).read_text(encoding="utf-8")
)


def test_signer_reproduces_the_go_known_answer_byte_for_byte() -> None:
    signer = Signer.parse(KAT["signer_key"])
    assert signer.sign(KAT["text"]) == KAT["note"]
    assert signer.skey == KAT["signer_key"]
    assert signer.verifier.vkey == KAT["verifier_key"]


def test_verifier_accepts_the_known_answer_and_rejects_any_change() -> None:
    verifier = Verifier.parse(KAT["verifier_key"])
    assert open_note(KAT["note"], [verifier]).text == KAT["text"]
    for changed in (
        KAT["note"].replace("cryptography", "cryptographY"),
        KAT["note"].replace("problem,", "problem;"),
        KAT["note"].replace("x08go", "x08gp"),
    ):
        with pytest.raises(NoteError):
            open_note(changed, [verifier])


def test_unknown_keys_are_ignored_but_one_known_signature_is_needed() -> None:
    other = Signer.generate("someone.else/key")
    with pytest.raises(NoteError, match="no signature of a trusted key"):
        open_note(KAT["note"], [other.verifier])
    both = Note.parse(KAT["note"]).with_signature(other.signature_line(KAT["text"].encode()))
    assert open_note(both.render(), [Verifier.parse(KAT["verifier_key"])]).text == KAT["text"]


def test_verifier_key_with_a_wrong_id_is_refused() -> None:
    name, _, rest = KAT["verifier_key"].split("+", 2)
    with pytest.raises(NoteError, match="wrong key ID"):
        Verifier.parse(f"{name}+00000000+{rest}")


def test_checkpoint_round_trip_and_origin_must_be_the_key_name() -> None:
    log = Signer.from_seed("sqjz.wushen.example/audit", bytes(range(32)))
    checkpoint = Checkpoint("sqjz.wushen.example/audit", 7, EMPTY_ROOT)
    note = log.sign(checkpoint.text())
    assert note.startswith(
        "sqjz.wushen.example/audit\n7\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— "
    )
    opened, _ = open_checkpoint(note, log.verifier)
    assert opened == checkpoint
    impostor = Signer.from_seed("other.example/log", bytes(range(32)))
    with pytest.raises(NoteError):
        open_checkpoint(impostor.sign(checkpoint.text()), impostor.verifier)


def test_checkpoint_parse_refuses_bad_sizes_and_roots() -> None:
    for text in ("o\n01\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", "o\n1\nAAAA\n", "o\n1\n"):
        with pytest.raises(NoteError):
            Checkpoint.parse(text)


def test_cosignature_key_id_uses_type_4_and_verifies() -> None:
    witness = Signer.from_seed("witness.example/w1", bytes(32), COSIGNATURE_V1)
    assert witness.verifier.vkey.split("+", 2)[2].startswith("B")  # base64 of 0x04 ...
    text = Checkpoint("sqjz.wushen.example/audit", 3, EMPTY_ROOT).text()
    log = Signer.from_seed("sqjz.wushen.example/audit", bytes(range(32)))
    note = Note.parse(log.sign(text)).with_signature(cosign(witness, text, 1_700_000_000))
    assert verify_cosignature(note, Verifier.parse(witness.verifier.vkey)) == 1_700_000_000
    assert open_note(note, [log.verifier]).text == text  # a cosignature does not disturb it
    forged = Note(text.replace("\n3\n", "\n4\n"), note.signatures)
    with pytest.raises(NoteError):
        verify_cosignature(forged, witness.verifier)
