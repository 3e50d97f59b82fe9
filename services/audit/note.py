"""C2SP signed notes (Ed25519), tlog checkpoints and tlog cosignatures; pure.

- signed-note: text ending in a newline, a blank line, then lines `— <name> base64(keyID || sig)`;
  key ID = SHA-256(name || 0x0A || type || public key)[:4], type 0x01 for Ed25519.
- tlog-checkpoint: the note text is `<origin>\\n<size>\\n<base64 root>\\n` plus extension lines.
- tlog-cosignature v1 (type 0x04): a witness signs `cosignature/v1\\ntime <t>\\n` + the checkpoint
  text; the signature is keyID || u64 timestamp || Ed25519 signature.
Keys use the Go `golang.org/x/mod/sumdb/note` encodings: `PRIVATE+KEY+<name>+<id>+<base64>`
(signer) and `<name>+<id>+<base64>` (verifier), the base64 starting with the type byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from services.audit.merkle import HASH_SIZE

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
SIGNATURE_PREFIX = "— "  # em dash, space
PRIVATE_PREFIX = "PRIVATE+KEY+"
MAX_SIGNATURES = 100


class NoteError(ValueError):
    """A malformed note or key, or a note no trusted key signed."""


def key_id(name: str, key_type: int, public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _check_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise NoteError(f"bad key name {name!r}")


def _public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise NoteError(f"bad base64 {text!r}") from error


@dataclass(frozen=True)
class Verifier:
    name: str
    key_type: int
    public_key: Ed25519PublicKey
    id: int

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """`<name>+<hex id>+<base64(type || public key)>`."""
        try:
            name, id_hex, encoded = vkey.strip().split("+", 2)
            declared = int(id_hex, 16)
        except ValueError as error:
            raise NoteError(f"bad verifier key {vkey!r}") from error
        _check_name(name)
        raw = _b64decode(encoded)
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1) or len(id_hex) != 8:
            raise NoteError(f"unsupported verifier key {vkey!r}")
        if key_id(name, raw[0], raw[1:]) != declared:
            raise NoteError(f"verifier key {vkey!r} has the wrong key ID")
        return cls(name, raw[0], Ed25519PublicKey.from_public_bytes(raw[1:]), declared)

    @property
    def vkey(self) -> str:
        raw = bytes([self.key_type]) + self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{self.name}+{self.id:08x}+{base64.b64encode(raw).decode()}"


@dataclass(frozen=True)
class Signer:
    """An Ed25519 note signer (type 0x01), or a witness's cosigner (type 0x04)."""

    name: str
    private_key: Ed25519PrivateKey
    key_type: int = ED25519

    @classmethod
    def from_seed(cls, name: str, seed: bytes, key_type: int = ED25519) -> Signer:
        _check_name(name)
        if len(seed) != 32:
            raise NoteError("an Ed25519 seed has 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed), key_type)

    @classmethod
    def generate(cls, name: str, key_type: int = ED25519) -> Signer:
        _check_name(name)
        return cls(name, Ed25519PrivateKey.generate(), key_type)

    @classmethod
    def parse(cls, skey: str) -> Signer:
        """`PRIVATE+KEY+<name>+<hex id>+<base64(type || seed)>`."""
        if not skey.startswith(PRIVATE_PREFIX):
            raise NoteError("a signer key starts with PRIVATE+KEY+")
        try:
            name, id_hex, encoded = skey.strip()[len(PRIVATE_PREFIX) :].split("+", 2)
            declared = int(id_hex, 16)
        except ValueError as error:
            raise NoteError("bad signer key") from error
        raw = _b64decode(encoded)
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError("unsupported signer key")
        signer = cls.from_seed(name, raw[1:], raw[0])
        if signer.id != declared:
            raise NoteError("signer key has the wrong key ID")
        return signer

    @property
    def id(self) -> int:
        return key_id(self.name, self.key_type, _public_bytes(self.private_key))

    @property
    def skey(self) -> str:
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        encoded = base64.b64encode(bytes([self.key_type]) + seed).decode()
        return f"{PRIVATE_PREFIX}{self.name}+{self.id:08x}+{encoded}"

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_type, self.private_key.public_key(), self.id)

    def signature_line(self, message: bytes, prefix: bytes = b"") -> str:
        signature = self.id.to_bytes(4, "big") + prefix + self.private_key.sign(message)
        return f"{SIGNATURE_PREFIX}{self.name} {base64.b64encode(signature).decode()}\n"

    def sign(self, text: str) -> str:
        """A note of `text` signed by this key (type 0x01)."""
        _check_text(text)
        return text + "\n" + self.signature_line(text.encode())


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("note text must end in a newline")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise NoteError("note text has control characters")


@dataclass(frozen=True)
class Signature:
    name: str
    id: int
    raw: bytes  # after the key ID

    @property
    def line(self) -> str:
        encoded = base64.b64encode(self.id.to_bytes(4, "big") + self.raw).decode()
        return f"{SIGNATURE_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[Signature, ...]

    @classmethod
    def parse(cls, note: str) -> Note:
        if len(note) > 1_000_000:
            raise NoteError("note too large")
        _check_text(note)
        split = note.rfind("\n\n")
        if split < 0:
            raise NoteError("note has no signatures")
        text, block = note[: split + 1], note[split + 2 :]
        signatures = []
        for line in block.splitlines():
            if not line.startswith(SIGNATURE_PREFIX):
                raise NoteError(f"malformed signature line {line!r}")
            name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
            _check_name(name)
            raw = _b64decode(encoded)
            if len(raw) < 5:
                raise NoteError("signature too short")
            signatures.append(Signature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
        if not signatures or len(signatures) > MAX_SIGNATURES:
            raise NoteError("a note has between 1 and 100 signatures")
        return cls(text, tuple(signatures))

    def render(self) -> str:
        return self.text + "\n" + "".join(signature.line for signature in self.signatures)

    def with_signature(self, line: str) -> Note:
        added = Note.parse(self.text + "\n" + line).signatures
        known = {(s.name, s.id) for s in self.signatures}
        return Note(
            self.text, self.signatures + tuple(s for s in added if (s.name, s.id) not in known)
        )


def open_note(note: str | Note, verifiers: list[Verifier]) -> Note:
    """The note, once every signature of a known key verifies and at least one does.

    Signatures of unknown keys are ignored; a known key's bad signature rejects the note.
    Cosignatures (type 0x04) are verified by `verify_cosignature`, not here.
    """
    parsed = Note.parse(note) if isinstance(note, str) else note
    known = {(v.name, v.id): v for v in verifiers if v.key_type == ED25519}
    verified = 0
    for signature in parsed.signatures:
        verifier = known.get((signature.name, signature.id))
        if verifier is None:
            continue
        try:
            verifier.public_key.verify(signature.raw, parsed.text.encode())
        except InvalidSignature as error:
            raise NoteError(f"signature of {signature.name} does not verify") from error
        verified += 1
    if not verified:
        raise NoteError("no signature of a trusted key")
    return parsed


# --- checkpoints ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint has an origin, a size and a root hash line")
        origin, size, root = lines[0], lines[1], lines[2]
        if not origin or not size.isdigit() or (size != "0" and size.startswith("0")):
            raise NoteError("bad checkpoint origin or size")
        root_hash = _b64decode(root)
        if len(root_hash) != HASH_SIZE:
            raise NoteError("checkpoint root hash is not 32 bytes")
        return cls(origin, int(size), root_hash, tuple(lines[3:-1]))


def open_checkpoint(note: str | Note, log_key: Verifier) -> tuple[Checkpoint, Note]:
    """A checkpoint signed by the log: its key name must be the origin."""
    opened = open_note(note, [log_key])
    checkpoint = Checkpoint.parse(opened.text)
    if checkpoint.origin != log_key.name:
        raise NoteError(f"checkpoint of {checkpoint.origin!r}, key of {log_key.name!r}")
    return checkpoint, opened


def cosigned_message(checkpoint_text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


def cosign(witness: Signer, checkpoint_text: str, timestamp: int) -> str:
    """The witness's cosignature line (tlog-cosignature v1) over a checkpoint."""
    if witness.key_type != COSIGNATURE_V1:
        raise NoteError("a cosigner key has type 0x04")
    stamp = struct.pack(">Q", timestamp)
    return witness.signature_line(cosigned_message(checkpoint_text, timestamp), prefix=stamp)


def verify_cosignature(note: Note, witness: Verifier) -> int:
    """The timestamp of the witness's valid cosignature on the note; NoteError if none."""
    for signature in note.signatures:
        if (signature.name, signature.id) != (witness.name, witness.id):
            continue
        if len(signature.raw) != 8 + 64:
            raise NoteError("malformed cosignature")
        timestamp: int
        (timestamp,) = struct.unpack(">Q", signature.raw[:8])
        try:
            witness.public_key.verify(signature.raw[8:], cosigned_message(note.text, timestamp))
        except InvalidSignature as error:
            raise NoteError(f"cosignature of {witness.name} does not verify") from error
        return timestamp
    raise NoteError(f"no cosignature of {witness.name}")
