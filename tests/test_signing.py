"""Signing keys and C2SP signed notes (recorder/signing.py), and `studio-recorder keygen`.

Real key files in tmp_path, the CLI in-process through click's runner, and a signed-note
verifier written here from the format alone (with ``cryptography``), so a note our code
accepts is one any implementation of the format accepts.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from recorder.cli import cli
from recorder.signing import (
    DEFAULT_KEY_NAME,
    Signer,
    SigningError,
    Verifier,
    generate_key,
    load_signer,
    open_note,
    parse_verifier,
    write_new_key,
)
from tests.support.notes import independent_verify

TEXT = "studio-recorder checkpoint v1 s\naccount 100000\nat 1\n"

# Known answers, published as data: the example of Go's golang.org/x/mod/sumdb/note
# documentation (Ed25519 is deterministic, so signing must reproduce it byte for byte) and
# the verifier-key example of the C2SP signed-note specification.
GO_PRIVATE_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
SPEC_VERIFIER_KEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def keygen(*args: str) -> Result:
    return CliRunner().invoke(cli, ["keygen", *args], prog_name="studio-recorder")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def secret_part(private_text: str) -> str:
    """The base64 seed of a private key line: what must never be shown anywhere."""
    return private_text.strip().split("+", 4)[4]


# --- keygen and key files -------------------------------------------------------------------


def test_keygen_writes_a_private_key_0600_and_a_verifier_key_0644(tmp_path: Path) -> None:
    out = tmp_path / "signing-key"
    old_umask = os.umask(0o077)  # whatever the umask, the modes are exactly these
    try:
        result = keygen("--out", str(out))
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    verifier_key = result.stdout.strip()
    assert result.stdout == verifier_key + "\n"  # only that line
    assert mode(out) == 0o600
    assert mode(tmp_path / "signing-key.pub") == 0o644
    assert (tmp_path / "signing-key.pub").read_text() == verifier_key + "\n"
    private_text = out.read_text()
    assert private_text.endswith("\n")
    assert private_text.count("\n") == 1
    assert private_text.startswith(f"PRIVATE+KEY+{DEFAULT_KEY_NAME}+")
    assert secret_part(private_text) not in result.output

    # The verifier key: NAME+KEYID+BASE64(0x01 ‖ key), the key id recomputed from the format.
    name, key_hash, key_b64 = verifier_key.split("+", 2)
    key = base64.b64decode(key_b64)
    assert name == DEFAULT_KEY_NAME
    assert key[:1] == b"\x01"
    assert len(key) == 33
    assert key_hash == hashlib.sha256(name.encode() + b"\n" + key).digest()[:4].hex()
    # The private key names the same key id, and its seed derives the same public key.
    _, _, private_name, private_hash, seed_b64 = private_text.strip().split("+", 4)
    assert (private_name, private_hash) == (name, key_hash)
    seed = base64.b64decode(seed_b64)
    assert seed[:1] == b"\x01"
    assert len(seed) == 33
    assert load_signer(out).verifier_key == verifier_key


def test_keygen_with_a_name(tmp_path: Path) -> None:
    result = keygen("--out", str(tmp_path / "k"), "--name", "desk.example.com/recorder-1")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("desk.example.com/recorder-1+")
    assert load_signer(tmp_path / "k").name == "desk.example.com/recorder-1"


@pytest.mark.parametrize("name", ["", "has space", "plus+sign", "tab\there"])
def test_keygen_refuses_a_bad_name_with_exit_2(tmp_path: Path, name: str) -> None:
    result = keygen("--out", str(tmp_path / "k"), "--name", name)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("studio-recorder: error: Invalid value for '--name': bad key")
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize("existing", ["k", "k.pub"])
def test_keygen_never_overwrites_either_file(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("precious\n")
    result = keygen("--out", str(tmp_path / "k"))
    assert result.exit_code == 1
    assert result.stderr == (
        f"studio-recorder: error: {tmp_path / existing} already exists: "
        "a key is never overwritten; choose another path\n"
    )
    assert (tmp_path / existing).read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]  # nothing else left
    with pytest.raises(SigningError, match="already exists"):
        write_new_key(tmp_path / "k")


def test_keygen_into_a_directory_that_cannot_hold_it_is_exit_1(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = keygen("--out", str(tmp_path / "file" / "k"))  # a file is no directory, even for root
    assert result.exit_code == 1
    assert result.stderr == (
        f"studio-recorder: error: cannot create {tmp_path / 'file' / 'k'}: Not a directory\n"
    )


def test_write_new_key_returns_the_verifier_key(tmp_path: Path) -> None:
    verifier_key = write_new_key(tmp_path / "k", "n")
    assert verifier_key == (tmp_path / "k.pub").read_text().strip()
    assert parse_verifier(str(tmp_path / "k.pub")) == Verifier.from_text(verifier_key)
    assert parse_verifier(verifier_key) == load_signer(tmp_path / "k").verifier


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"cannot read .*: No such file or directory"),
        (b"\xff\xfe", r"is not a private key \(not UTF-8 text\)"),
        (b"", r"not a private key: expected PRIVATE\+KEY\+NAME\+KEYID\+BASE64"),
        (b"PRIVATE+KEY+n+0000+AQ==\n", r"not a private key: expected"),
        (b"PRIVATE+KEY+n+00000000+AQ==\n", r"private key n\+00000000 does not hold an Ed25519"),
        (b"PRIVATE+KEY+a b+00000000+AQ==\n", r"bad key name"),
    ],
)
def test_load_signer_refuses_bad_files_in_one_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SigningError, match=message) as info:
        load_signer(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_key_whose_id_does_not_match_is_refused(tmp_path: Path) -> None:
    private_text, verifier_key = generate_key("n")
    _, _, name, key_hash, seed = private_text.split("+", 4)
    wrong = "00000000" if key_hash != "00000000" else "00000001"
    with pytest.raises(SigningError, match="the key id does not match the key") as info:
        Signer.from_text(f"PRIVATE+KEY+{name}+{wrong}+{seed}")
    assert seed not in str(info.value)
    name, key_hash, key = verifier_key.split("+", 2)
    with pytest.raises(SigningError, match="the key id does not match the key"):
        Verifier.from_text(f"{name}+{wrong}+{key}")
    with pytest.raises(SigningError, match="the key id does not match the key"):
        Verifier.from_text(f"other+{key_hash}+{key}")  # the id covers the name too


def test_public_and_private_keys_are_not_taken_for_each_other(tmp_path: Path) -> None:
    private_text, verifier_key = generate_key()
    with pytest.raises(SigningError, match="this is a verifier \\(public\\) key") as info:
        Signer.from_text(verifier_key)
    with pytest.raises(SigningError, match="this is a private key") as info:
        Verifier.from_text(private_text)
    assert secret_part(private_text) not in str(info.value)
    with pytest.raises(SigningError, match="this is a private key") as info:
        parse_verifier(private_text)
    assert secret_part(private_text) not in str(info.value)
    (tmp_path / "key").write_text(private_text + "\n")
    with pytest.raises(SigningError, match="this is a private key") as info:
        parse_verifier(str(tmp_path / "key"))
    assert secret_part(private_text) not in str(info.value)


def test_parse_verifier_reads_a_pub_file_relative_to_a_directory(tmp_path: Path) -> None:
    verifier_key = write_new_key(tmp_path / "k")
    assert parse_verifier("k.pub", relative_to=tmp_path).text == verifier_key
    with pytest.raises(SigningError, match=r"cannot read .*missing\.pub: No such file"):
        parse_verifier("missing.pub", relative_to=tmp_path)
    # Not a key and not a file: the argument is not echoed (it might be a private seed).
    seed = secret_part(generate_key()[0])
    with pytest.raises(SigningError) as info:
        parse_verifier(seed)
    assert str(info.value) == "not a verifier key (NAME+KEYID+BASE64) nor the name of a .pub file"


# --- signed notes ---------------------------------------------------------------------------


def signer_and_verifier(name: str = "test-key") -> tuple[Signer, Verifier]:
    private_text, verifier_key = generate_key(name)
    return Signer.from_text(private_text), Verifier.from_text(verifier_key)


def test_the_reference_implementations_known_answers() -> None:
    signer = Signer.from_text(GO_PRIVATE_KEY)
    assert (signer.name, signer.key_id.hex()) == ("PeterNeumann", "c74f20a3")
    assert signer.verifier_key == GO_VERIFIER_KEY
    assert signer.sign(GO_TEXT) == GO_NOTE
    assert open_note(GO_NOTE, [parse_verifier(GO_VERIFIER_KEY)]) == (GO_TEXT, ["PeterNeumann"])
    assert independent_verify(GO_NOTE, GO_VERIFIER_KEY)
    spec = Verifier.from_text(SPEC_VERIFIER_KEY)
    assert (spec.name, spec.key_id.hex(), spec.text) == (
        "example.com/foo",
        "530d903a",
        SPEC_VERIFIER_KEY,
    )
    assert open_note(SPEC_NOTE, [spec]) == ("This is an example message.\n", ["example.com/foo"])
    assert independent_verify(SPEC_NOTE, SPEC_VERIFIER_KEY)


def test_sign_then_open_round_trip_and_the_note_format() -> None:
    signer, verifier = signer_and_verifier()
    note = signer.sign(TEXT)
    assert note.startswith(TEXT + "\n\u2014 test-key ")
    assert note.endswith("\n")
    assert note.count("\n") == TEXT.count("\n") + 2
    signature = base64.b64decode(note.splitlines()[-1].split(" ")[2])
    assert signature[:4] == verifier.key_id
    assert len(signature) == 4 + 64
    assert open_note(note, [verifier]) == (TEXT, ["test-key"])
    assert signer.verifier == verifier


def test_an_independent_verifier_accepts_our_notes_and_refuses_tampering() -> None:
    signer, _ = signer_and_verifier("studio-recorder")
    text = "line one\naccount %C3%A9\u00e9 non-ASCII text\n"
    note = signer.sign(text)
    assert independent_verify(note, signer.verifier_key)
    assert not independent_verify(note.replace("one", "two"), signer.verifier_key)
    other, _ = signer_and_verifier("studio-recorder")
    assert not independent_verify(note, other.verifier_key)


def test_notes_signed_by_several_keys_and_unknown_keys_are_ignored() -> None:
    first, first_verifier = signer_and_verifier("first")
    second, second_verifier = signer_and_verifier("second")
    note = first.sign(TEXT) + second.sign(TEXT).removeprefix(TEXT + "\n")
    assert open_note(note, [first_verifier, second_verifier]) == (TEXT, ["first", "second"])
    assert open_note(note, [second_verifier]) == (TEXT, ["second"])
    assert open_note(note, []) == (TEXT, [])  # signed, but by no trusted key: the caller decides
    assert independent_verify(note, first.verifier_key)
    assert independent_verify(note, second.verifier_key)


def test_tampered_text_or_signature_fails_and_another_key_does_not_count() -> None:
    signer, verifier = signer_and_verifier()
    note = signer.sign(TEXT)
    with pytest.raises(SigningError, match=r"^signature by test-key does not verify$"):
        open_note(note.replace("100000", "100001"), [verifier])
    text, line = note[: len(TEXT) + 1], note[len(TEXT) + 1 :]
    name_part, encoded = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1
    forged = f"{text}{name_part} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(SigningError, match="does not verify"):
        open_note(forged, [verifier])
    assert not independent_verify(forged, signer.verifier_key)
    # The same name and text under another key: not this verifier's signature at all.
    impostor, impostor_verifier = signer_and_verifier("test-key")
    assert open_note(impostor.sign(TEXT), [verifier]) == (TEXT, [])
    assert open_note(note, [impostor_verifier]) == (TEXT, [])


@pytest.mark.parametrize(
    "note",
    [
        TEXT,  # no signatures
        TEXT + "\n",  # a blank line, then nothing
        "no newline at the end",
        TEXT + "\n- test-key AAAA\n",  # a hyphen, not an em dash
        TEXT + "\n\u2014 test-key\n",  # no signature
        TEXT + "\n\u2014 test-key not!base64\n",
        TEXT + "\n\u2014 test-key AAAA\n",  # only 3 bytes: no room for a key id and signature
        "\n\n\u2014 test-key AAAAAAAA\n",  # an empty text
        "a\n\nb\n\n\u2014 test-key AAAAAAAA\n",  # a blank line inside the text
        "a\rb\n\n\u2014 test-key AAAAAAAA\n",  # a control character
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    _, verifier = signer_and_verifier()
    with pytest.raises(SigningError, match=r"^malformed signed note: ") as info:
        open_note(note, [verifier])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["no newline", "a\n\nb\n", "\n", "", "tab\there\n", "\ud800\n"])
def test_sign_refuses_a_text_a_note_cannot_carry(text: str) -> None:
    signer, _ = signer_and_verifier()
    with pytest.raises(ValueError):  # noqa: PT011 - several messages, one contract
        signer.sign(text)


# --- secrets stay secret --------------------------------------------------------------------


def test_the_private_key_shows_in_no_repr_str_or_error(tmp_path: Path) -> None:
    write_new_key(tmp_path / "k")
    private_text = (tmp_path / "k").read_text()
    seed = secret_part(private_text)
    signer = load_signer(tmp_path / "k")
    shown = [repr(signer), str(signer), repr(signer.verifier), str(signer.verifier)]
    for text in shown:
        assert seed not in text
        assert "private_key" not in text
    assert signer == Signer.from_text(private_text)  # equal by name, id and public key
    # Damaged key files: the errors say what is wrong, never what the file holds.
    for damaged in (
        private_text.replace("PRIVATE+KEY", "PRIVATE+KEX"),
        private_text.replace(seed, seed[:-4] + "AAA="),
        private_text.replace(seed, seed + seed),
        private_text.strip() + " trailing words",
    ):
        (tmp_path / "bad").write_text(damaged)
        with pytest.raises(SigningError) as info:
            load_signer(tmp_path / "bad")
        assert seed[:12] not in str(info.value), str(info.value)
        (tmp_path / "bad").unlink()
