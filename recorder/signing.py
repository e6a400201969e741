"""Ed25519 keys and C2SP signed notes: what a checkpoint is signed with and checked against.

The formats are those of the C2SP signed-note specification and of Go's
``golang.org/x/mod/sumdb/note``, so any implementation of it can check our notes:

* verifier key (public, one line): ``NAME+KEYID+BASE64(0x01 ‖ 32-byte public key)``,
  where ``KEYID`` is 8 lower-case hex digits: the first 4 bytes of
  ``SHA-256(NAME ‖ "\\n" ‖ 0x01 ‖ public key)``;
* private key (one line in a file of its own, mode 0600):
  ``PRIVATE+KEY+NAME+KEYID+BASE64(0x01 ‖ 32-byte Ed25519 seed)``;
* signed note: the text (UTF-8, ending in a newline, no blank line, no control
  character but newline), a blank line, then one line per signature:
  ``— NAME BASE64(4-byte key id ‖ 64-byte Ed25519 signature of the text)``.

The cryptography is the ``cryptography`` library's; this module only encodes. It does
no I/O except reading and writing key files. No message, ``repr`` or ``str`` here ever
holds private key material: errors about a private key say what is wrong with it, never
what it holds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from .errors import RecorderError
from .percent import percent_encode

__all__ = [
    "DEFAULT_KEY_NAME",
    "Signer",
    "SigningError",
    "Verifier",
    "check_key_name",
    "check_note_text",
    "generate_key",
    "key_id",
    "load_signer",
    "open_note",
    "parse_verifier",
    "percent_encode",
    "write_new_key",
]

DEFAULT_KEY_NAME: Final = "studio-recorder"
#: The algorithm byte that precedes every Ed25519 key and that the key id covers.
ALG_ED25519: Final = b"\x01"
PRIVATE_KEY_PREFIX: Final = "PRIVATE+KEY+"
SIGNATURE_PREFIX: Final = "— "  # U+2014 EM DASH, then one space
KEY_ID_BYTES: Final = 4
#: A note with more signature lines than this is refused (as by Go's note package).
MAX_SIGNATURES: Final = 100
PRIVATE_KEY_MODE: Final = 0o600
PUBLIC_KEY_MODE: Final = 0o644
PUBLIC_KEY_SUFFIX: Final = ".pub"

_KEY_ID: Final = re.compile(r"[0-9a-fA-F]{8}")
_VERIFIER_SHAPE: Final = re.compile(r"[^\s+]+\+[0-9a-fA-F]{8}\+[A-Za-z0-9+/]+=*")
_CONTROL: Final = re.compile(r"[\x00-\x09\x0b-\x1f]")


class SigningError(RecorderError):
    """A key or a signed note is missing, unreadable or malformed, or a signature is bad."""


def check_key_name(name: str) -> str:
    """``name`` when it can name a key: non-empty, no whitespace, no ``+``; else SigningError."""
    if not name or "+" in name or any(char.isspace() for char in name):
        raise SigningError(f"bad key name {name!r}: give a non-empty name without spaces or '+'")
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id: the start of SHA-256(name ‖ "\\n" ‖ 0x01 ‖ public key)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + ALG_ED25519 + public_key).digest()
    return digest[:KEY_ID_BYTES]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes | None:
    """Standard base64 with padding, or None when ``text`` is not that."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def _verifier_text(name: str, public_key: bytes) -> str:
    return f"{name}+{key_id(name, public_key).hex()}+{_b64(ALG_ED25519 + public_key)}"


def _raw_public(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def generate_key(name: str = DEFAULT_KEY_NAME) -> tuple[str, str]:
    """A new key pair as ``(private key text, verifier key text)``, each one line.

    Raises SigningError for a name that cannot name a key (:func:`check_key_name`).
    """
    check_key_name(name)
    private_key = Ed25519PrivateKey.generate()
    seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public_key = _raw_public(private_key)
    private_text = (
        f"{PRIVATE_KEY_PREFIX}{name}+{key_id(name, public_key).hex()}+{_b64(ALG_ED25519 + seed)}"
    )
    return private_text, _verifier_text(name, public_key)


def _create(path: Path, mode: int) -> int:
    """A new file's descriptor, with ``mode`` from its creation; never an existing file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags, mode)
    except FileExistsError:
        raise SigningError(
            f"{path} already exists: a key is never overwritten; choose another path"
        ) from None
    except OSError as exc:
        raise SigningError(f"cannot create {path}: {exc.strerror}") from None
    os.fchmod(descriptor, mode)  # exactly ``mode``, whatever the umask
    return descriptor


def _write_all(descriptor: int, text: str) -> None:
    """Write all of ``text`` and fsync: a key that is announced must be on disk."""
    data = memoryview(text.encode("ascii"))
    while data:
        data = data[os.write(descriptor, data) :]
    os.fsync(descriptor)


def write_new_key(path: Path, name: str = DEFAULT_KEY_NAME) -> str:
    """Write a new key pair: the private key to ``path`` (0600), the verifier key to
    ``path.pub`` (0644); return the verifier key text.

    Neither file may exist: SigningError (and nothing written) when one does, or when
    the directory is not writable. The private file is 0600 from its creation, so it is
    never readable by others, not even for an instant.
    """
    private_text, verifier_text = generate_key(name)
    public_path = path.with_name(path.name + PUBLIC_KEY_SUFFIX)
    private_fd = _create(path, PRIVATE_KEY_MODE)
    try:
        public_fd = _create(public_path, PUBLIC_KEY_MODE)
    except SigningError:
        os.close(private_fd)
        path.unlink()
        raise
    try:
        _write_all(private_fd, private_text + "\n")
        _write_all(public_fd, verifier_text + "\n")
    except OSError as exc:
        for leftover in (path, public_path):
            leftover.unlink(missing_ok=True)
        raise SigningError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        os.close(private_fd)
        os.close(public_fd)
    return verifier_text


@dataclass(frozen=True)
class Verifier:
    """A public key that notes are checked against: its name, key id and raw 32 bytes."""

    name: str
    key_id: bytes
    public_key: bytes = field(repr=False)

    @classmethod
    def from_text(cls, text: str) -> Verifier:
        """Parse a verifier key line (``NAME+KEYID+BASE64``); SigningError when malformed.

        The message never quotes ``text``: a private key pasted by mistake must not
        end up in a log.
        """
        text = text.strip()
        if text.startswith(PRIVATE_KEY_PREFIX):
            raise SigningError("this is a private key: give its verifier key (the .pub file)")
        parts = text.split("+", 2)
        if len(parts) != 3 or not _KEY_ID.fullmatch(parts[1]):
            raise SigningError("not a verifier key: expected NAME+KEYID+BASE64 on one line")
        name, hex_id, encoded = parts
        check_key_name(name)
        key = _unb64(encoded)
        if key is None or len(key) != 1 + 32 or key[:1] != ALG_ED25519:
            raise SigningError(f"verifier key {name}+{hex_id} does not hold an Ed25519 key")
        public_key = key[1:]
        if key_id(name, public_key) != bytes.fromhex(hex_id):
            raise SigningError(f"verifier key {name}+{hex_id}: the key id does not match the key")
        return cls(name=name, key_id=bytes.fromhex(hex_id), public_key=public_key)

    @property
    def text(self) -> str:
        """The verifier key line (``NAME+KEYID+BASE64``)."""
        return _verifier_text(self.name, self.public_key)

    def verifies(self, text: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature of ``text``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """A private key that signs notes. Its ``repr`` and ``str`` never show the key."""

    name: str
    key_id: bytes
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)
    verifier_key: str

    @classmethod
    def from_text(cls, text: str) -> Signer:
        """Parse private key text (``PRIVATE+KEY+NAME+KEYID+BASE64``, surrounding
        whitespace ignored); SigningError when malformed, never quoting the text."""
        text = text.strip()
        if not text.startswith(PRIVATE_KEY_PREFIX):
            if _VERIFIER_SHAPE.fullmatch(text):
                raise SigningError("this is a verifier (public) key, not the private key")
            raise SigningError("not a private key: expected PRIVATE+KEY+NAME+KEYID+BASE64")
        parts = text[len(PRIVATE_KEY_PREFIX) :].split("+", 2)
        if len(parts) != 3 or not _KEY_ID.fullmatch(parts[1]) or "\n" in text:
            raise SigningError("not a private key: expected PRIVATE+KEY+NAME+KEYID+BASE64")
        name, hex_id, encoded = parts
        check_key_name(name)
        key = _unb64(encoded)
        if key is None or len(key) != 1 + 32 or key[:1] != ALG_ED25519:
            raise SigningError(f"private key {name}+{hex_id} does not hold an Ed25519 key")
        private_key = Ed25519PrivateKey.from_private_bytes(key[1:])
        public_key = _raw_public(private_key)
        if key_id(name, public_key) != bytes.fromhex(hex_id):
            raise SigningError(f"private key {name}+{hex_id}: the key id does not match the key")
        return cls(
            name=name,
            key_id=bytes.fromhex(hex_id),
            private_key=private_key,
            verifier_key=_verifier_text(name, public_key),
        )

    @property
    def verifier(self) -> Verifier:
        """The matching :class:`Verifier`."""
        return Verifier.from_text(self.verifier_key)

    def sign(self, text: str) -> str:
        """The signed note: ``text``, a blank line and this key's signature line.

        Raises ValueError for a text that a signed note cannot carry: not ending in a
        newline, holding a blank line or a control character other than newline, or
        not encodable as UTF-8.
        """
        check_note_text(text)
        signature = self.private_key.sign(text.encode("utf-8"))
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {_b64(self.key_id + signature)}\n"


def check_note_text(text: str) -> None:
    """ValueError unless ``text`` can be a note's text (see :meth:`Signer.sign`)."""
    if not text.endswith("\n"):
        raise ValueError("a note's text must end with a newline")
    if text.startswith("\n") or "\n\n" in text:
        raise ValueError("a note's text must not hold a blank line")
    if _CONTROL.search(text):
        raise ValueError("a note's text must not hold control characters other than newline")
    text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate


def load_signer(path: Path) -> Signer:
    """The private key in the file at ``path``.

    SigningError, naming the file, when it is missing, unreadable, not text or not a
    private key. File permissions are the caller's business (the configuration warns).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SigningError(f"{path} is not a private key (not UTF-8 text)") from None
    except OSError as exc:
        raise SigningError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return Signer.from_text(text)
    except SigningError as exc:
        raise SigningError(f"{path}: {exc}") from None


def parse_verifier(text_or_path: str, relative_to: Path | None = None) -> Verifier:
    """A verifier key line, or the path of a ``.pub`` file holding one (what
    ``--public-key`` and ``[signing] public_keys`` accept).

    A relative path is taken relative to ``relative_to`` when given (the configuration
    file's directory), else to the working directory. SigningError when the key is
    malformed or the file cannot be read.
    """
    if _VERIFIER_SHAPE.fullmatch(text_or_path.strip()):
        return Verifier.from_text(text_or_path)
    if text_or_path.strip().startswith(PRIVATE_KEY_PREFIX):
        raise SigningError("this is a private key: give its verifier key (the .pub file)")
    path = Path(text_or_path)
    if relative_to is not None:
        path = relative_to / path
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SigningError(f"{path} is not a verifier key (not UTF-8 text)") from None
    except OSError as exc:
        # Quote only what is surely a path: a mistyped key may be secret (a private seed).
        if "." in text_or_path or path.exists():
            raise SigningError(f"cannot read {path}: {exc.strerror}") from None
        raise SigningError(
            "not a verifier key (NAME+KEYID+BASE64) nor the name of a .pub file"
        ) from None
    try:
        return Verifier.from_text(text)
    except SigningError as exc:
        raise SigningError(f"{path}: {exc}") from None


def _split_note(note: str) -> tuple[str, list[str]]:
    """``(text, signature lines)``; SigningError when ``note`` is not a signed note."""
    if not note.endswith("\n"):
        raise SigningError("malformed signed note: it must end with a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise SigningError("malformed signed note: no blank line before the signatures")
    text, signatures = note[: split + 1], note[split + 2 :]
    try:
        check_note_text(text)
    except ValueError as exc:
        raise SigningError(f"malformed signed note: {exc}") from None
    lines = signatures.removesuffix("\n").split("\n")
    if not signatures or len(lines) > MAX_SIGNATURES:
        raise SigningError(f"malformed signed note: it needs 1 to {MAX_SIGNATURES} signatures")
    return text, lines


def open_note(note: str, verifiers: Sequence[Verifier]) -> tuple[str, list[str]]:
    """Check a signed note against trusted keys: ``(text, names of the keys that signed it)``.

    Signatures by keys not in ``verifiers`` are ignored; an empty list means no trusted
    key signed the note (the caller decides what that means). Raises SigningError for a
    malformed note, and for a signature line that names a trusted key (name and key id)
    but does not verify: a forged or damaged note is never half-accepted.
    """
    text, lines = _split_note(note)
    trusted = {(v.name, v.key_id): v for v in verifiers}
    text_bytes = text.encode("utf-8")
    signed_by: list[str] = []
    for line in lines:
        name, space, encoded = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
        decoded = _unb64(encoded)
        if (
            not line.startswith(SIGNATURE_PREFIX)
            or not space
            or decoded is None
            or len(decoded) <= KEY_ID_BYTES
        ):
            raise SigningError("malformed signed note: a signature line is not '— NAME BASE64'")
        try:
            check_key_name(name)
        except SigningError:
            raise SigningError("malformed signed note: a signature names a bad key") from None
        verifier = trusted.get((name, decoded[:KEY_ID_BYTES]))
        if verifier is None:
            continue
        if not verifier.verifies(text_bytes, decoded[KEY_ID_BYTES:]):
            raise SigningError(f"signature by {name} does not verify")
        if name not in signed_by:
            signed_by.append(name)
    return text, signed_by
