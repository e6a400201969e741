"""An independent reading of the C2SP signed-note format, for tests: written from the format
alone with ``cryptography``, never with recorder.signing, so a note the project accepts is
one any implementation of the format accepts."""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def independent_verify(note: str, verifier_key: str) -> bool:
    """Does ``verifier_key`` sign ``note``? From the C2SP signed-note format alone."""
    name, key_hash, key_b64 = verifier_key.split("+", 2)
    key = base64.b64decode(key_b64, validate=True)
    assert key[0] == 0x01, "not an Ed25519 verifier key"
    assert len(key) == 33, "not an Ed25519 verifier key"
    expected_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    assert key_hash == expected_id.hex(), "the key id is not the hash of name and key"
    public_key = Ed25519PublicKey.from_public_bytes(key[1:])

    data = note.encode("utf-8")
    assert data.endswith(b"\n")
    split = data.rindex(b"\n\n")
    text, signature_block = data[: split + 1], data[split + 2 :]
    for line in signature_block.decode("utf-8").splitlines():
        dash, signer_name, signature_b64 = line.split(" ")
        assert dash == "\u2014"
        signature = base64.b64decode(signature_b64, validate=True)
        if signer_name != name or signature[:4] != expected_id:
            continue
        try:
            public_key.verify(signature[4:], text)
        except InvalidSignature:
            return False
        return True
    return False
